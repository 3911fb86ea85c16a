"""Train a Segmenter from a PaddleSeg-style YAML (single process, or under paddle.distributed.launch)."""
import argparse
import sys

import segmenter  # noqa: F401  (registers the components)
from segmenter.engine.cli_errors import run_cli
from segmenter.engine.run import load_config, run_train


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--iters", type=int)
    p.add_argument("--batch_size", type=int)
    p.add_argument("--learning_rate", type=float)
    p.add_argument("--save_dir", default="output")
    p.add_argument("--save_interval", type=int, default=1000)
    p.add_argument("--keep_checkpoint_max", type=int, default=2)
    p.add_argument("--log_iters", type=int, default=10)
    p.add_argument("--do_eval", action="store_true")
    p.add_argument("--use_vdl", action="store_true")
    p.add_argument("--resume_model")
    p.add_argument("--num_workers", type=int, default=0,
                   help="data-loading worker processes (0: read in the training process); never changes the batches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: automatic mixed precision (O1) with loss scaling; needs a GPU")
    p.add_argument("--save_all_ranks", action="store_true",
                   help="every rank writes its final weights to save_dir/rank_R.pdparams (to compare replicas)")
    p.add_argument("--opts", nargs="+", default=None, help="YAML overrides key=value")
    return p.parse_args()


def main(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.opts, args.iters, args.batch_size, args.learning_rate)
    run_train(cfg, args.save_dir, seed=args.seed, save_interval=args.save_interval,
              keep_k=args.keep_checkpoint_max, log_iters=args.log_iters, do_eval=args.do_eval,
              use_vdl=args.use_vdl, resume_model=args.resume_model,
              save_all_ranks=args.save_all_ranks, num_workers=args.num_workers, precision=args.precision)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))
