"""`flm data check|synth`: validate a WFLW-layout root; write a synthetic one."""
from collections import Counter

import click


@click.group()
def data() -> None:
    """Inspect and generate training data (WFLW layout)."""


@data.command("check")
@click.option("--data", "root", required=True, type=click.Path(file_okay=False),
              help="WFLW-layout root (WFLW_annotations/ and WFLW_images/).")
@click.option("--skip-bad", is_flag=True, help="Report bad lines as warnings and keep going.")
@click.option("--load-images", is_flag=True, help="Also decode every image (slower; checks readability).")
@click.option("--val-fraction", type=float, default=None, help="Validation share of the train list.")
@click.option("--seed", type=int, default=None, help="Split seed (default: config's).")
def check(root, skip_bad, load_images, val_fraction, seed) -> None:
    """Read and validate every annotation list; print counts and attribute shares."""
    import logging

    from keras_flm.config import TrainConfig
    from runtime.landmarks import ATTRIBUTES
    from runtime.wflw import AnnotationError, attribute_shares, load_image, read_annotations, split_train_val

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    tc = TrainConfig()
    val_fraction = tc.val_fraction if val_fraction is None else val_fraction
    seed = tc.seed if seed is None else seed
    lists = {}
    try:
        for split in ("train", "test"):
            lists[split] = read_annotations(root, split, skip_bad=skip_bad)
    except AnnotationError as e:
        raise click.ClickException(str(e)) from None
    train, val = split_train_val(lists["train"], val_fraction, seed)
    parts = [("train", train), ("val", val), ("test", lists["test"])]
    click.echo("%-6s %7s  %s" % ("split", "faces", "  ".join("%11s" % a for a in ATTRIBUTES)))
    for name, recs in parts:
        shares = attribute_shares(recs)
        click.echo("%-6s %7d  %s" % (name, len(recs), "  ".join("%10.1f%%" % (100 * shares[a])
                                                                 for a in ATTRIBUTES)))
    for split, recs in lists.items():
        sources = Counter(r.rel_path.split("/", 1)[0] for r in recs)
        click.echo("%s sources: %s" % (split, ", ".join("%s %d" % kv for kv in sources.most_common(8))
                                       + (" ..." if len(sources) > 8 else "")))
    if load_images:
        from tqdm import tqdm

        bad = 0
        for split, recs in lists.items():
            for r in tqdm(recs, desc="decoding %s images" % split, unit="img"):
                try:
                    load_image(r)
                except AnnotationError as e:
                    if not skip_bad:
                        raise click.ClickException(str(e)) from None
                    bad += 1
                    click.echo("WARNING: %s" % e, err=True)
        click.echo("images decoded: %d unreadable" % bad)
    click.echo("OK: %s (val = %.0f%% of train, seed %d)" % (root, 100 * val_fraction, seed))


@data.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write a WFLW-layout synthetic dataset into.")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of faces.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset at --out.")
def synth(out_dir, n, seed, overwrite) -> None:
    """Write a synthetic WFLW-layout dataset (rendered faces with exact landmarks)."""
    from keras_flm.synth import write_dataset

    kwargs = {"overwrite": True} if overwrite else {}
    try:
        summary = write_dataset(out_dir, n, seed=seed, progress=True, **kwargs)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    if isinstance(summary, dict):
        click.echo("wrote %s: %s train + %s test faces (seed %s, %s faces/s)"
                   % (summary.get("root", out_dir), summary.get("train", "?"), summary.get("test", "?"),
                      summary.get("seed", seed), summary.get("faces_per_second", "?")))
    else:
        click.echo("wrote %d faces to %s" % (n, out_dir))
