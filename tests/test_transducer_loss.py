"""The transducer loss against brute-force enumeration of alignments, and its hand-written gradient."""

import itertools
import math

import pytest
import torch

from asrforge.losses.transducer import transducer_loss


def brute_force_nll(logits: torch.Tensor, targets: list[int], T: int, blank: int = 0) -> float:
    """-log of the summed probability of every alignment: each one is an order of T blanks and U labels
    ending in a blank, walked through the lattice."""
    lp = torch.log_softmax(logits.double(), -1)
    U = len(targets)
    total = []
    # choose which of the first T + U - 1 moves are labels; the last move is always the final blank
    for labels_at in itertools.combinations(range(T + U - 1), U):
        t = u = 0
        score = 0.0
        for step in range(T + U - 1):
            if step in labels_at:
                score += float(lp[t, u, targets[u]])
                u += 1
            else:
                score += float(lp[t, u, blank])
                t += 1
            if t >= T:
                break
        else:
            if t == T - 1 and u == U:
                total.append(score + float(lp[t, u, blank]))
    m = max(total)
    return -(m + math.log(sum(math.exp(s - m) for s in total)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_equals_brute_force_with_padding(seed):
    torch.manual_seed(seed)
    B, T, U, V = 3, 5, 3, 6
    logits = torch.randn(B, T, U + 1, V) * 2
    targets = torch.randint(1, V, (B, U))
    T_b, U_b = torch.tensor([5, 3, 1]), torch.tensor([3, 2, 0])
    got = transducer_loss(logits, targets, T_b, U_b, reduction="none")
    for b in range(B):
        want = brute_force_nll(logits[b], targets[b, : U_b[b]].tolist(), int(T_b[b]))
        assert got[b].item() == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert transducer_loss(logits, targets, T_b, U_b, reduction="sum").item() == pytest.approx(got.sum().item(), rel=1e-6)
    assert transducer_loss(logits, targets, T_b, U_b).item() == pytest.approx(got.mean().item(), rel=1e-6)


def test_blank_other_than_zero():
    torch.manual_seed(3)
    logits = torch.randn(1, 4, 3, 5)
    targets = torch.tensor([[0, 2]])
    got = transducer_loss(logits, targets, torch.tensor([4]), torch.tensor([2]), blank=4)
    assert got.item() == pytest.approx(brute_force_nll(logits[0], [0, 2], 4, blank=4), rel=1e-5)


def test_gradient_matches_gradcheck_in_float64():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1, 3], [2, 0]])
    T_b, U_b = torch.tensor([4, 2]), torch.tensor([2, 1])
    weights = torch.tensor([0.7, 1.3], dtype=torch.float64)   # a non-uniform upstream gradient per utterance
    assert torch.autograd.gradcheck(lambda x: (transducer_loss(x, targets, T_b, U_b, reduction="none") * weights).sum(),
                                    (logits,))


def test_gradient_equals_autograd_through_brute_force():
    """The hand-written backward equals autograd's gradient of the enumerated sum."""
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 3, 4, requires_grad=True)
    targets = torch.tensor([[2, 1]])
    transducer_loss(logits, targets, torch.tensor([3]), torch.tensor([2])).backward()
    ref = logits.detach().double().requires_grad_()
    lp = torch.log_softmax(ref[0], -1)
    paths = []
    for labels_at in itertools.combinations(range(4), 2):
        t = u = 0
        s = lp.new_zeros(())
        for step in range(4):
            if step in labels_at:
                s = s + lp[t, u, [2, 1][u]]
                u += 1
            else:
                s = s + lp[t, u, 0]
                t += 1
        if t == 2 and u == 2:
            paths.append(s + lp[2, 2, 0])
    (-torch.logsumexp(torch.stack(paths), 0)).backward()
    torch.testing.assert_close(logits.grad.double(), ref.grad, atol=1e-5, rtol=1e-4)


def test_bad_shapes_are_named():
    logits = torch.randn(2, 4, 3, 5)
    with pytest.raises(ValueError, match="targets must be"):
        transducer_loss(logits, torch.zeros(2, 3, dtype=torch.long), torch.tensor([4, 4]), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="logit_lengths"):
        transducer_loss(logits, torch.zeros(2, 2, dtype=torch.long), torch.tensor([5, 4]), torch.tensor([2, 2]))


def test_half_precision_logits_accumulate_in_float32():
    torch.manual_seed(2)
    logits = torch.randn(2, 6, 4, 7)
    targets = torch.randint(1, 7, (2, 3))
    T_b, U_b = torch.tensor([6, 4]), torch.tensor([3, 2])
    low = logits.bfloat16().requires_grad_()
    loss = transducer_loss(low, targets, T_b, U_b, reduction="sum")
    loss.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    ref = logits.bfloat16().float().requires_grad_()
    want = transducer_loss(ref, targets, T_b, U_b, reduction="sum")
    want.backward()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    torch.testing.assert_close(low.grad.float(), ref.grad, atol=1e-2, rtol=1e-2)
