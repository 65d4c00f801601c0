"""Command line: ``python -m lessons_lib data synth|prepare|check|download|cache``, ``... score``
and ``... predict``.

A user's mistake (bad data, a read-only or full cache, a bad option value) is one
``error: ...`` line and exit status 2, never a traceback; Ctrl-C is one ``interrupted`` line and
exit status 130; output piped to a reader that stops early (``data cache | head``) ends the
command quietly with status 141, as a shell reports a program stopped by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lessons_lib.data.layouts import DATASETS, SPLITS
from lessons_lib.errors import DataError


def _positive_int(text: str) -> int:
    """An option value that must be a whole number >= 1 (``--size 0`` is refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _synth(args: argparse.Namespace) -> int:
    from lessons_lib.synth import make_dataset

    out = make_dataset(args.out, n=args.n, size=args.size, seed=args.seed, workers=args.workers)
    print(f"wrote a synthetic ISIC-2017-layout dataset to {out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from lessons_lib.data.prepare import prepare

    splits = tuple(args.split) if args.split else None
    prep = prepare(args.root, args.dataset, args.size, args.out, splits, args.workers, args.seed)
    print(f"prepared {len(prep.manifest['entries'])} pairs at {args.size} px in {prep.path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from lessons_lib.data.check import check_dataset

    n, problems = check_dataset(args.root, args.dataset, args.split, args.workers)
    for message in problems:
        print(f"PROBLEM {message}")
    print(f"checked {n} image/mask pairs: {len(problems)} problem(s)")
    return 1 if problems else 0


def _download(args: argparse.Namespace) -> int:
    from lessons_lib.data.download import download

    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    download(
        args.dataset,
        args.to,
        splits,
        accept_terms=args.accept_terms,
        archives=args.archives,
        mirrors=args.mirror,
        delete_archives=args.delete_archives,
        reverify=args.reverify,
    )
    return 0


def _cache(args: argparse.Namespace) -> int:
    from lessons_lib.atomic import cache_root
    from lessons_lib.data.cache import describe, remove_unused, scan_cache

    folders = scan_cache()
    if not args.remove_unused:
        print(describe(folders, cache_root()))
        return 0
    removed = remove_unused(folders)
    for folder in removed:
        print(f"removed {folder.path} ({folder.unused})")
    freed = sum(f.n_bytes for f in removed) / 1e6
    print(f"removed {len(removed)} unused prepared folder(s), {freed:,.1f} MB")
    return 0


def _score(args: argparse.Namespace) -> int:
    from lessons_lib.metrics import main_score

    print(
        main_score(
            Path(args.truth_dir), Path(args.pred_dir), as_json=args.json, official=args.official
        )
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from lessons_lib.evaluation.predict import predict_folder

    result = predict_folder(
        args.run_dir, args.images, args.out, args.zip, args.batch_size, args.device, args.skip_bad
    )
    new = len(result.masks) - result.kept
    kept = f"; kept the {result.kept} the previous run wrote" if result.kept else ""
    where = f"; packed all {len(result.masks)} into {args.zip}" if args.zip is not None else ""
    print(f"wrote {new} masks to {args.out}{kept}{where}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} images that cannot be read:")
        for err in result.skipped:
            print("  " + str(err).replace("\n", "\n  "))
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m lessons_lib``."""
    top = argparse.ArgumentParser(prog="python -m lessons_lib", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="make, prepare and check datasets")
    dsub = data.add_subparsers(dest="action", required=True)

    p = dsub.add_parser("synth", help="write a synthetic dermoscopy dataset (ISIC 2017 layout)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=40, help="training images (valid/test: n//4)")
    p.add_argument("--size", type=int, default=256, help="image width in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(run=_synth)

    for name, helptext, run in (
        ("prepare", "resize a dataset once into a cache", _prepare),
        ("check", "validate a dataset and report every problem", _check),
    ):
        p = dsub.add_parser(name, help=helptext)
        p.add_argument("--dataset", required=True, choices=DATASETS)
        p.add_argument("--root", required=True, type=Path)
        p.add_argument("--workers", type=_positive_int, default=2)
        if name == "prepare":
            p.add_argument(
                "--size", type=_positive_int, required=True, help="shorter side in pixels (>= 1)"
            )
            p.add_argument("--out", type=Path, default=None)
            p.add_argument("--split", choices=SPLITS, action="append")
            p.add_argument("--seed", type=int, default=0)
        else:
            p.add_argument("--split", choices=SPLITS, default=None)
        p.set_defaults(run=run)

    p = dsub.add_parser(
        "cache",
        help="list the course's cache (prepared and synthetic datasets) and free its unused part",
        description="List what the course's cache folder ($LESSONS_CACHE, or "
        "~/.cache/lessons_lib) holds: each prepared dataset (dataset, source folder, size, seed) "
        "and synthetic dataset with its size on disk. A prepared folder whose dataset folder is "
        "gone, or that an earlier version of the course named otherwise, is marked UNUSED: no "
        "run reads it again.",
    )
    p.add_argument(
        "--remove-unused",
        action="store_true",
        help="delete the prepared folders marked UNUSED (nothing else)",
    )
    p.set_defaults(run=_cache)

    p = dsub.add_parser(
        "download",
        help="download, verify and unpack ISIC 2016/2017/2018 or PH2 in the publisher's layout",
    )
    from lessons_lib.data.download import DOWNLOADABLE

    p.add_argument("dataset", choices=DOWNLOADABLE)
    p.add_argument("--to", required=True, type=Path, help="the dataset root to fill")
    p.add_argument("--splits", help="comma-separated: train,valid,test (default: all there are)")
    p.add_argument("--accept-terms", action="store_true", help="accept PH2's terms of use")
    p.add_argument("--archives", type=Path, help="where to keep the archives (default TO/archives)")
    p.add_argument(
        "--delete-archives", action="store_true", help="delete each archive once it is unpacked"
    )
    p.add_argument("--reverify", action="store_true", help="hash downloaded archives again")
    p.add_argument(
        "--mirror",
        action="append",
        help="base URL replacing the publishers' hosts (repeatable; or LESSONS_DOWNLOAD_MIRROR)",
    )
    p.set_defaults(run=_download)

    p = sub.add_parser(
        "score",
        help="score predicted masks with the ISIC challenge metrics",
        description="Score a folder of predicted masks against a folder of ground truth with "
        "the ISIC challenge metrics, per image and pooled. Masks of 0 and 255 are read as the "
        "official isic-challenge-scoring reads them (lesion above 128). A mask holding only 0 "
        "and 1 is read as lesion where 1, as this course's loaders read it; the official "
        "scorer reads it as all background (and scores such a prediction 0): a note says when "
        "the folders hold such files, and --official scores exactly as the official scorer.",
    )
    p.add_argument("truth_dir", type=Path)
    p.add_argument("pred_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--official",
        action="store_true",
        help="read every mask as isic-challenge-scoring does: lesion above 128, so a 0/1 mask "
        "is all background",
    )
    p.set_defaults(run=_score)

    p = sub.add_parser(
        "predict", help="predict masks for a folder of images with a chapter run's network"
    )
    p.add_argument("--run", dest="run_dir", required=True, type=Path, help="a chapter's run folder")
    p.add_argument("--images", required=True, type=Path, help="folder of images")
    p.add_argument("--out", required=True, type=Path, help="where <stem>_segmentation.png go")
    p.add_argument("--zip", type=Path, default=None, help="also pack the masks into this zip")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="predict the readable images and name the others (default: list every unreadable "
        "image and predict nothing)",
    )
    p.set_defaults(run=_predict)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    A :class:`DataError` (bad data, or a cache folder that cannot be written) is printed as
    ``error: ...`` without a traceback and returns 2; Ctrl-C prints ``interrupted`` and
    returns 130 (the shell's code for SIGINT), after the worker processes have stopped; a
    closed pipe on standard output returns 141 (128 + SIGPIPE) without a traceback.
    """
    args = parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()  # a closed pipe fails here, not at exit where it cannot be caught
        return status
    except BrokenPipeError:
        # The reader stopped reading (``| head``). Python's documented way out (the signal
        # module's "Note on SIGPIPE"): point stdout at devnull so the flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
