"""flm's Vitis AI layer: DPU lint, vai_q/vai_c drivers (docker only, imported lazily), xmodel
checks and the board bundle. Python 3.8 syntax: it runs inside the Vitis AI docker."""
