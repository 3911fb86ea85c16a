"""One training step in each framework from the same weights and batch: loss, gradients and updates agree."""

import numpy as np
import paddle
import paddle.nn.functional as PF
import pytest
import torch
import torch.nn.functional as TF

from segmenter.convert.core import to_layout
from segmenter.parity import build_pair, load_into_torch, paddle_state, tiny_model_cfg

REL_TOL = 1e-4
LR = 0.1


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(a.astype(np.float64)), 1e-30))


@pytest.mark.parametrize("decoder", ["linear", "mask_transformer"])
def test_one_sgd_step_agrees(decoder):
    paddle.seed(11)
    p, t = build_pair(tiny_model_cfg("small", decoder, num_classes=4))
    load_into_torch(t, paddle_state(p))
    p.train()
    t.train()  # dropout and drop-path are 0 in these configs, so training mode is deterministic
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 40, 48)).astype(np.float32)
    y = rng.integers(0, 4, (2, 40, 48)).astype(np.int64)

    popt = paddle.optimizer.SGD(learning_rate=LR, parameters=p.parameters())
    ploss = PF.cross_entropy(p(paddle.to_tensor(x))[0], paddle.to_tensor(y), axis=1)
    ploss.backward()
    topt = torch.optim.SGD(t.parameters(), lr=LR)
    tloss = TF.cross_entropy(t(torch.from_numpy(x))[0], torch.from_numpy(y))
    tloss.backward()

    ploss_v, tloss_v = float(ploss), float(tloss.detach())
    rel_loss = abs(ploss_v - tloss_v) / abs(tloss_v)
    assert rel_loss <= REL_TOL, f"loss paddle {ploss_v:.7f} vs torch {tloss_v:.7f}: rel {rel_loss:.2e}"
    pgrads = {k: v.grad.numpy() for k, v in p.named_parameters()}
    tgrads = to_layout({k: v.grad.numpy() for k, v in t.named_parameters()}, "paddle", "torch")
    assert set(pgrads) == set(tgrads), f"parameter names differ: {sorted(set(pgrads) ^ set(tgrads))}"
    all_p = np.concatenate([g.ravel() for g in pgrads.values()])
    all_t = np.concatenate([tgrads[k].ravel() for k in pgrads])
    assert _rel(all_p, all_t) <= REL_TOL, f"all gradients: rel L2 {_rel(all_p, all_t):.2e}"
    worst = max(pgrads, key=lambda k: _rel(pgrads[k], tgrads[k]))
    assert _rel(pgrads[worst], tgrads[worst]) <= REL_TOL, (
        f"gradient of {worst}: rel L2 {_rel(pgrads[worst], tgrads[worst]):.2e} "
        f"(|g|={np.linalg.norm(pgrads[worst]):.2e})"
    )

    popt.step()
    topt.step()
    after_p = paddle_state(p)
    after_t = to_layout({k: v.detach().numpy() for k, v in t.state_dict().items()}, "paddle", "torch")
    worst = max(after_p, key=lambda k: _rel(after_p[k], after_t[k]))
    assert _rel(after_p[worst], after_t[worst]) <= REL_TOL, (
        f"updated {worst}: rel L2 {_rel(after_p[worst], after_t[worst]):.2e}"
    )
