"""Train a Segmenter from a PaddleSeg-style YAML (single process, or under paddle.distributed.launch).

python tools/train.py --config X.yml --save_dir output --do_eval [--resume_model output/iter_1000]
"""

import sys

SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from segmenter.engine import cli, tool_args  # noqa: E402
from segmenter.engine.cli_errors import run_cli  # noqa: E402


def parse_args(argv=None):
    return tool_args.train(__doc__, argv)


def main(args) -> None:
    from segmenter.engine.run import load_config, run_train

    cfg = load_config(args.config, args.opts, args.iters, args.batch_size, args.learning_rate, args.verbose)
    cli.apply_device(args.device)
    run_train(
        cfg,
        args.save_dir,
        seed=args.seed,
        save_interval=args.save_interval,
        keep_k=args.keep_checkpoint_max,
        log_iters=args.log_iters,
        do_eval=args.do_eval,
        use_vdl=args.use_vdl,
        resume_model=cli.resume_folder(args.resume_model),  # a save_dir names its newest iter_N
        save_all_ranks=args.save_all_ranks,
        num_workers=args.num_workers,
        precision=args.precision,
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))
