import pytest
import torch
import torch.nn.functional as F

from asrforge.losses.ctc import ctc_loss, min_ctc_frames
from asrforge.models.ctc import CTCModel, CTCModelConfig
from asrforge.models.encoders import RNNEncoderConfig


@pytest.mark.parametrize("rnn_type,bidirectional", [("lstm", True), ("gru", True), ("lstm", False)])
def test_padding_never_changes_a_result(rnn_type, bidirectional):
    torch.manual_seed(0)
    encoder = RNNEncoderConfig(rnn_type=rnn_type, hidden=24, layers=2, bidirectional=bidirectional, dropout=0.0,
                               conv_channels=4)
    model = CTCModel(CTCModelConfig(encoder=encoder, dropout=0.0), 20, 11).eval()
    lens = torch.tensor([37, 16, 50])
    x = torch.randn(3, 50, 20)
    x[0, 37:] = 0
    x[1, 16:] = 0
    out, out_lens = model(x, lens)
    assert out.shape == (3, 13, 11) and out_lens.tolist() == [10, 4, 13]
    for b in range(3):
        alone, n = model(x[b : b + 1, : lens[b]], lens[b : b + 1])
        assert n.item() == out_lens[b].item()
        torch.testing.assert_close(out[b, : n.item()], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, 13), atol=1e-5)   # log-softmax over symbols


def test_min_frames_counts_repeats():
    tokens = torch.tensor([[1, 1, 2, 0], [3, 4, 5, 6], [7, 7, 7, 0]])
    assert min_ctc_frames(tokens, torch.tensor([3, 4, 3])).tolist() == [4, 4, 5]


def test_infeasible_utterances_are_skipped_and_counted():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 6, 5).log_softmax(-1)
    out_lens = torch.tensor([6, 2, 6])
    tokens = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 4, 4]])   # #2 needs 3 frames (has 2); #3 needs 5 (has 6)
    token_lens = torch.tensor([3, 3, 3])
    out = ctc_loss(log_probs, out_lens, tokens, token_lens)
    assert out.skipped == 1 and out.usable.tolist() == [True, False, True]
    ref = F.ctc_loss(log_probs[[0, 2]].transpose(0, 1), tokens[[0, 2]], out_lens[[0, 2]], token_lens[[0, 2]],
                     reduction="none")
    torch.testing.assert_close(out.loss, (ref / 3).mean())
    none = ctc_loss(log_probs[1:2], out_lens[1:2], tokens[1:2], token_lens[1:2])
    assert none.loss is None and none.skipped == 1


def test_frequency_pooling_front_end():
    """conv_freq_pool: padding still never changes a result, and a feature moved by one band of the first layer
    (two input bands) still excites the first layer where it did before, which without pooling it does not."""
    from asrforge.nn.subsampling import Conv2dSubsampling

    torch.manual_seed(0)
    front = Conv2dSubsampling(40, 16, channels=4, freq_pool=3).eval()
    x, lens = torch.randn(2, 30, 40), torch.tensor([30, 17])
    x[1, 17:] = 0
    out, out_lens = front(x, lens)
    alone, _ = front(x[1:2, :17], lens[1:2])
    torch.testing.assert_close(out[1, : out_lens[1]], alone[0], atol=1e-5, rtol=1e-5)

    def first_layer_band_response(front, band):
        """First layer's response (max over channels and time) per band for a spike in input band ``band``."""
        with torch.no_grad():
            front.conv1.weight.zero_()
            front.conv1.weight[:, 0, 1, 1] = 1.0   # each channel copies the input (centre tap)
            front.conv1.bias.zero_()
            spike = torch.zeros(1, 1, 8, 40)
            spike[..., band] = 1.0
            return front.freq_pool(torch.relu(front.conv1(spike))).amax(dim=(0, 1, 2))

    pooled, plain = Conv2dSubsampling(40, 16, 4, freq_pool=3), Conv2dSubsampling(40, 16, 4)
    for front, overlaps in ((pooled, True), (plain, False)):
        a, b = first_layer_band_response(front, 20), first_layer_band_response(front, 22)
        assert bool(((a > 0) & (b > 0)).any()) is overlaps
    with pytest.raises(ValueError, match="odd"):
        Conv2dSubsampling(40, 16, 4, freq_pool=2)
    from asrforge.errors import ConfigError
    from asrforge.recipe import load_recipe

    with pytest.raises(ConfigError, match="conv_freq_pool must be an odd number"):
        load_recipe(None, ["model.encoder.conv_freq_pool=4"])
