"""``klrpn data download ...``, ``klrpn data synth ...`` and ``klrpn data check ...``."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="download datasets and weights; make synthetic data")
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    dl = actions.add_parser("download", help="fetch, verify and unpack datasets / weights")
    dl.add_argument("targets", nargs="+", metavar="TARGET",
                    help="group (coco, voc, weights) or manifest entry name (e.g. coco-val2017)")
    dl.add_argument("--root", default="data", help="download root (default: data)")
    dl.add_argument("--manifest", default=None, help="manifest TSV replacing the packaged one")
    dl.add_argument("--mirror", default=None,
                    help="base URL or local folder tried first for every file (<mirror>/<file>)")
    dl.add_argument("--keep-archives", action="store_true", help="keep archives after unpacking")
    dl.add_argument("--retries", type=int, default=5, help="resumes per URL after a dropped connection")
    dl.add_argument("--no-progress", action="store_true", help="no progress bars")
    dl.set_defaults(func=run_download)

    synth = actions.add_parser("synth", help="write the synthetic COCO + VOCdevkit datasets")
    synth.add_argument("--root", default="synthetic", help="output folder (default: synthetic)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=float, default=1.0, help="image/object size factor")
    synth.set_defaults(func=run_synth)

    chk = actions.add_parser("check", help="pre-flight: fail, listing every problem and what to do, when "
                                          "data a profile's cells read is missing or broken, or the "
                                          "disk is too small (first stage of both pipelines)")
    chk.add_argument("--profile", default="paper", help="params profile of every cell (default: paper)")
    chk.add_argument("--params", default=None, help="params directory (default: $KLRPN_PARAMS or params)")
    chk.add_argument("--out", default=None,
                     help="JSON file listing each cell's download markers (written only on success)")
    chk.add_argument("--results", default=None,
                     help="results folder whose disk must hold the cells' checkpoints "
                          "(default: no disk check)")
    chk.add_argument("--dataset", default=None,
                     help="check only the cells reading this dataset.name (coco, voc07, voc0712)")
    chk.add_argument("--markers-only", action="store_true",
                     help="check the download markers only, not the images and weights they stand for")
    chk.set_defaults(func=run_check)


def run_download(args) -> int:
    from klrpn.data.download import DownloadError, download

    try:
        download(args.targets, root=args.root, manifest=args.manifest, mirror=args.mirror,
                 keep_archives=args.keep_archives, retries=args.retries,
                 progress=not args.no_progress)
    except DownloadError as err:
        print(f"klrpn data download: {err}", file=sys.stderr)
        return 1
    return 0


def run_synth(args) -> int:
    from klrpn.data.synthetic import generate

    try:
        generate(args.root, seed=args.seed, scale=args.scale)
    except (FileExistsError, ValueError) as err:
        print(f"klrpn data synth: {err}", file=sys.stderr)
        return 1
    return 0


def run_check(args) -> int:
    from klrpn.config import ParamsError
    from klrpn.data.check import DataCheckError, check, write_report

    try:
        report = check(args.profile, args.params, files=not args.markers_only,
                       results=args.results, dataset=args.dataset)
    except (DataCheckError, ParamsError, ValueError) as err:
        print(f"klrpn data check: {err}", file=sys.stderr)
        return 1
    if args.out:
        write_report(report, args.out)
    needed = sorted({m for ms in report["cells"].values() for m in ms})
    print(f"klrpn data check: profile {args.profile}: "
          + (f"all {len(needed)} download markers present" if needed else
             "reads synthetic data (`klrpn data synth`), nothing to download")
          + f"; {report['images_checked']} images sound"
          + (f"; room for {report['disk_needed_bytes'] / 2**30:.2f} GiB of checkpoints in {args.results}"
             if args.results else ""))
    return 0
