"""Training and evaluation engine that runs on paddle 3 (PaddleSeg 2.8's loops do not).

The package itself imports none of its modules: the tools parse their arguments with `cli`, `tool_args`,
`cli_errors` and `config_check`, which must load without Paddle (segmenter/__init__.py). Import what you use:
`from segmenter.engine.train import train`, `from segmenter.engine.evaluate import evaluate`;
`import segmenter` imports `engine.losses`, which registers SegmenterCrossEntropyLoss with PaddleSeg.
"""
