import json

import pytest
import torch
import torch.nn.functional as F

from asrforge.data.manifest import read_manifest, write_manifest
from asrforge.errors import ConfigError
from asrforge.recipe import load_recipe
from asrforge.train.adversary import NO_SPEAKER, SpeakerAdversary, reversal_scale, reverse_gradient, speaker_index
from asrforge.checkpoint import load_checkpoint
from asrforge.train.trainer import Trainer
from conftest import REPO, tiny_overrides

DEMO = REPO / "configs" / "demo_ctc.yaml"
ADV = {"train.speaker_adversarial": 0.5}


def run(corpus, out, resume=False, **extra):
    return Trainer(load_recipe(DEMO, tiny_overrides(corpus, **extra)), out, resume=resume, progress=False).fit()


def test_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.arange(4.0)).sum().backward()
    assert torch.allclose(x.grad, -0.25 * torch.arange(4.0).expand(3, 4))


def test_reversal_scale_ramps_from_zero_to_the_weight():
    scales = [reversal_scale(0.5, p) for p in (0.0, 0.1, 0.5, 1.0, 2.0)]
    assert scales[0] == 0.0 and all(a < b for a, b in zip(scales[:4], scales[1:4]))
    assert scales[3] == pytest.approx(0.5, abs=1e-4) and scales[4] == scales[3]


def test_adversary_pools_only_real_frames_and_ignores_unnamed_speakers():
    torch.manual_seed(0)
    adv = SpeakerAdversary(dim=8, num_speakers=3)
    h, lens = torch.randn(2, 5, 8), torch.tensor([5, 3])
    speakers = torch.tensor([2, 0])
    loss, _ = adv(h, lens, speakers, 1.0)
    padded = torch.cat([h, 100 * torch.randn(2, 4, 8)], dim=1)   # garbage beyond every length
    padded[1, 3:5] = 100.0
    assert torch.allclose(adv(padded, lens, speakers, 1.0)[0], loss)
    # an utterance without a speaker contributes nothing: same loss as the named one alone
    alone, _ = adv(h[:1], lens[:1], speakers[:1], 1.0)
    mixed, _ = adv(h, lens, torch.tensor([2, NO_SPEAKER]), 1.0)
    assert torch.allclose(alone, mixed)
    none, accuracy = adv(h, lens, torch.tensor([NO_SPEAKER, NO_SPEAKER]), 1.0)
    assert none.item() == 0.0 and accuracy != accuracy   # NaN: nothing to score


def test_encoder_receives_the_negated_classifier_gradient():
    torch.manual_seed(0)
    adv = SpeakerAdversary(dim=6, num_speakers=2)
    h = torch.randn(3, 4, 6, requires_grad=True)
    lens, speakers = torch.tensor([4, 4, 2]), torch.tensor([0, 1, 1])
    adv(h, lens, speakers, 0.3)[0].backward()
    reversed_grad = h.grad.clone()
    h.grad = None
    # the same loss without reversal: the classifier's own gradient with respect to h
    mask = (torch.arange(4) < lens[:, None]).unsqueeze(-1).float()
    pooled = (h * mask).sum(1) / lens[:, None]
    F.cross_entropy(adv.classifier(pooled), speakers).backward()
    assert torch.allclose(reversed_grad, -0.3 * h.grad, atol=1e-6)


def test_speaker_index_is_sorted_and_skips_unnamed():
    assert speaker_index(["b", None, "a", "b"]) == {"a": 0, "b": 1}


def test_adversarial_training_logs_accuracy_keeps_checkpoints_plain_and_resumes_exactly(corpus, tmp_path):
    straight = run(corpus, tmp_path / "a", **ADV)
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    accuracies = [r["speaker_acc"] for r in log if "speaker_acc" in r]
    assert accuracies and all(0.0 <= a <= 1.0 for a in accuracies)
    run(corpus, tmp_path / "plain")
    a, p = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "plain" / "last.pt")
    # the classifier is training-only: the model evaluated and shipped has exactly the plain model's tensors
    assert set(a["model"]) == set(p["model"]) and "adversary" in a and "adversary" not in p
    assert any(not torch.equal(a["model"][k], p["model"][k]) for k in a["model"])   # and it did change training
    run(corpus, tmp_path / "b", **ADV, **{"train.max_steps": 3})
    resumed = run(corpus, tmp_path / "b", resume=True, **ADV)
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert resumed["steps"] == straight["steps"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["adversary"]:
        assert torch.equal(a["adversary"][k], b["adversary"][k]), k


def test_adversarial_training_needs_two_named_speakers(corpus, tmp_path):
    utts, _ = read_manifest(corpus / "train.jsonl")
    for u in utts:
        u.speaker = "solo"
    write_manifest(tmp_path / "one.jsonl", utts)
    with pytest.raises(ConfigError, match="at least two speakers"):
        Trainer(load_recipe(DEMO, tiny_overrides(corpus, **ADV, **{"data.train": str(tmp_path / "one.jsonl")})),
                tmp_path / "x", progress=False)


def test_adversarial_training_reads_speakers_from_shards(corpus, tmp_path):
    """Shards carry each utterance's speaker and their index lists them: the adversary trains from shards as from
    manifests. Shards whose index predates the speaker list are refused with the fix."""
    from asrforge.data.shards import write_shards

    index = write_shards(corpus / "train.jsonl", tmp_path / "shards", shard_size=20, progress=False)
    utts, _ = read_manifest(corpus / "train.jsonl")
    assert index["speakers"] == {s: sum(u.speaker == s for u in utts) for s in {u.speaker for u in utts}}
    run(corpus, tmp_path / "exp", **ADV, **{"data.train": index["spec"], "train.max_steps": 4})
    log = [json.loads(line) for line in (tmp_path / "exp" / "train_log.jsonl").read_text().splitlines()]
    assert [r["speaker_acc"] for r in log if "speaker_acc" in r]   # NaN-free: every streamed batch named its speakers
    assert len(load_checkpoint(tmp_path / "exp" / "last.pt")["adversary"]["classifier.2.bias"]) == len(index["speakers"])
    stale = json.loads((tmp_path / "shards" / "index.json").read_text())
    del stale["speakers"]
    (tmp_path / "shards" / "index.json").write_text(json.dumps(stale))
    with pytest.raises(ConfigError, match="write them again"):
        Trainer(load_recipe(DEMO, tiny_overrides(corpus, **ADV, **{"data.train": index["spec"]})), tmp_path / "x",
                progress=False)
