"""Where the time goes, per op category, Paddle vs PyTorch (segmenter/bench/profile.py; same as
`python tools/benchmark.py profile [args]`)."""

from segmenter.bench.profile import main

if __name__ == "__main__":
    main()
