"""The two paddle 3.3.1 oneDNN matmul faults that made UPerNetViT's compiled logits wrong, each as a tiny exported
graph run by an MKL predictor, a oneDNN predictor, and a oneDNN predictor with every oneDNN fusion pass deleted
(so the fault is the kernel, not a pass), with the forms models.segmenter.separable_product uses instead.

    python tools/benchmark.py onednn_repro

Faults: (1) a matmul over the spatial axes of a 4-D conv output reads oneDNN's blocked channel layout as NCHW;
(2) a matmul over an inner dimension of 1 with transpose_y returns wrong values (uninitialised ones once other
graphs ran in the process; its cached primitive then also served a same-shaped matmul without transpose_y).
Each row prints max|diff| to the dygraph layer.
"""

import argparse
import os
import tempfile
from typing import Callable, List, Optional, Sequence

import numpy as np

# The PIR passes paddle 3.3.1 runs between its dequant passes and onednn_placement_pass when oneDNN is on (read
# from its glog "Running PIR pass" lines); config.delete_pass removes a PIR pass (it no longer appears there).
ONEDNN_FUSION_PASSES = (
    "depthwise_conv_onednn_pass",
    "squeeze_transpose_onednn_fuse_pass",
    "conv2d_bn_onednn_fuse_pass",
    "conv2d_bias_bn_onednn_fuse_pass",
    "conv2d_bias_fuse_pass",
    "conv2d_transpose_bn_fuse_pass",
    "conv2d_transpose_bias_bn_fuse_pass",
    "conv2d_transpose_bias_fuse_pass",
    "conv3d_bias_fuse_pass",
    "conv_elementwise_add_onednn_fuse_pass",
    "conv_activation_mkldnn_fuse_pass",
    "conv_concat_activation_mkldnn_fuse_pass",
    "matmul_scale_fuse_pass",
    "scale_matmul_fuse_pass",
    "reshape_transpose_matmul_fuse_pass",
    "matmul_transpose_reshape_fuse_pass",
    "matmul_add_act_fuse_pass",
    "matmul_reshape_add_fuse_pass",
    "fc_onednn_enable_pass",
    "matmul_elementwise_add_fuse_pass",
    "matmul_activation_fuse_pass",
    "fc_activation_fuse_pass",
    "self_attention_fuse_pass",
    "batch_norm_act_fuse_pass",
    "softplus_activation_fuse_pass",
    "shuffle_channel_detect_pass",
    "elementwise_act_onednn_fuse_pass",
    "operator_scale_onednn_fuse_pass",
    "operator_unsqueeze_onednn_fuse_pass",
    "operator_reshape_onednn_fuse_pass",
)


def run_predictor(prefix: str, x: np.ndarray, onednn: bool, delete: Sequence[str] = ()) -> np.ndarray:
    import paddle.inference as paddle_infer

    config = paddle_infer.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(1)
    if onednn:
        config.enable_onednn()
    else:
        config.disable_onednn()
    for name in delete:
        config.delete_pass(name)
    config.disable_glog_info()
    pred = paddle_infer.create_predictor(config)
    handle = pred.get_input_handle(pred.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    pred.run()
    return pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()


def cases() -> List[tuple]:
    """(name, layer, input shape) of each graph."""
    import paddle
    import paddle.nn as nn

    from segmenter.models.conv import ConvModule
    from segmenter.models.segmenter import separable_product

    rs = np.random.RandomState(1)
    a_h, a_w, a_1 = (rs.rand(*s).astype("float32") for s in ((8, 4), (12, 6), (3, 1)))

    class Graph(nn.Layer):
        def __init__(self, fn: Callable, conv: bool):
            super().__init__()
            self.conv = ConvModule(16, 32, 1, norm=False, act=False) if conv else nn.Identity()
            self.fn = fn

        def forward(self, x):
            return self.fn(self.conv(x))

    c = paddle.to_tensor
    return [
        (
            "conv -> a_h @ x @ a_w^T on 4-D x",
            Graph(lambda x: paddle.matmul(paddle.matmul(c(a_h), x), c(a_w), transpose_y=True), True),
            (1, 16, 4, 6),
        ),
        (
            "conv -> separable_product (maps folded to 3-D)",
            Graph(lambda x: separable_product(x, c(a_h), c(a_w)), True),
            (1, 16, 4, 6),
        ),
        (
            "x [N, 2, 1] @ a [3, 1]^T (inner dimension 1)",
            Graph(lambda x: paddle.matmul(x.reshape([-1, 2, 1]), c(a_1), transpose_y=True), False),
            (1, 64, 2, 1),
        ),
        (
            "x [N, 2, 1] * a^T [1, 3] (separable_product's broadcast)",
            Graph(lambda x: x.reshape([-1, 2, 1]) * c(a_1.T), False),
            (1, 64, 2, 1),
        ),
    ]


def main(argv: Optional[List[str]] = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    import paddle

    import segmenter  # noqa: F401

    paddle.seed(0)
    print("| graph | MKL | oneDNN | oneDNN, fusion passes deleted |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, layer, shape) in enumerate(cases()):
            layer.eval()
            x = np.random.RandomState(i).rand(*shape).astype("float32")
            with paddle.no_grad():
                ref = layer(paddle.to_tensor(x)).numpy()
            spec = paddle.static.InputSpec([None, *shape[1:]], "float32", "x")
            prefix = os.path.join(tmp, f"g{i}")
            paddle.jit.save(paddle.jit.to_static(layer, input_spec=[spec], full_graph=True), prefix)
            diffs = [
                float(np.abs(run_predictor(prefix, x, onednn, delete) - ref).max())
                for onednn, delete in ((False, ()), (True, ()), (True, ONEDNN_FUSION_PASSES))
            ]
            print(f"| {name} | " + " | ".join(f"{d:.1e}" for d in diffs) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
