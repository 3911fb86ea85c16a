"""Train a Segmenter from a PaddleSeg-style YAML (single process, or under paddle.distributed.launch).

    python tools/train.py --config X.yml --save_dir output --do_eval [--resume_model output/iter_1000]
"""
import sys

import segmenter  # noqa: F401  (registers the components)
from segmenter.engine import cli
from segmenter.engine.cli_errors import run_cli
from segmenter.engine.run import load_config, run_train


def parse_args(argv=None):
    p = cli.Parser(__doc__)
    cli.add_config(p)
    p.add_argument("--iters", type=int, help="training iterations (default: the config's iters)")
    p.add_argument("--batch_size", type=int, help="images per iteration and rank (default: the config's)")
    p.add_argument("--learning_rate", type=float, help="base learning rate (default: the config's)")
    p.add_argument("--save_dir", default="output", help="checkpoints, config.yml, curves.png and VisualDL logs")
    p.add_argument("--save_interval", type=int, default=1000, help="iterations between checkpoints (and evals)")
    p.add_argument("--keep_checkpoint_max", type=int, default=2, help="iter_N folders kept")
    p.add_argument("--log_iters", type=int, default=10, help="iterations between [TRAIN] lines")
    p.add_argument("--do_eval", action="store_true",
                   help="evaluate at every checkpoint and keep best_model (default: off)")
    p.add_argument("--use_vdl", action="store_true", help="log to VisualDL in save_dir/vdl (default: off)")
    p.add_argument("--resume_model", help="continue from a checkpoint folder save_dir/iter_N (default: start anew)")
    p.add_argument("--num_workers", type=int, default=0,
                   help="data-loading worker processes (0: read in the training process); never changes the batches")
    p.add_argument("--seed", type=int, default=0, help="seeds the data order, augmentation and initialisation")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: automatic mixed precision (O1) with loss scaling; needs a GPU")
    p.add_argument("--save_all_ranks", action="store_true",
                   help="every rank writes its final weights to save_dir/rank_R.pdparams, to compare replicas "
                        "(default: off)")
    cli.add_common(p)
    cli.add_paddleseg_train(p)
    return p.parse_args(argv)


def main(args) -> None:
    cfg = load_config(args.config, args.opts, args.iters, args.batch_size, args.learning_rate, args.verbose)
    cli.apply_device(args.device)
    run_train(cfg, args.save_dir, seed=args.seed, save_interval=args.save_interval,
              keep_k=args.keep_checkpoint_max, log_iters=args.log_iters, do_eval=args.do_eval,
              use_vdl=args.use_vdl, resume_model=args.resume_model,
              save_all_ranks=args.save_all_ranks, num_workers=args.num_workers, precision=args.precision)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))
