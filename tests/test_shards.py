"""WebDataset shards: writing, reading back, exact epoch lengths per rank, and training from them."""

import io
import json
import random
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch
import webdataset as wds

from asrforge.data.dataset import ItemMaker
from asrforge.data.manifest import Utterance, read_manifest, write_manifest
from asrforge.data.shards import ShardStream, read_index, write_shards
from asrforge.errors import ConfigError
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.recipe import load_recipe
from asrforge.text import CharTokenizer, Normalizer
from asrforge.train.trainer import Trainer
from conftest import REPO, tiny_overrides


@pytest.fixture(scope="module")
def shards(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    index = write_shards(corpus / "train.jsonl", out, shard_size=8, progress=False)
    return out, index


def _stream(index, **kw):
    texts = read_index(index["spec"])["transcripts"]
    maker = ItemMaker(FeatureExtractor(FeatureConfig(n_mels=40)), CharTokenizer.build(Normalizer()(t) for t in texts),
                      Normalizer())
    return ShardStream(index["spec"], maker, 10.0, **kw)


def test_shards_hold_flac_and_json_for_every_utterance(corpus, shards):
    out, index = shards
    utts, _ = read_manifest(corpus / "train.jsonl")
    assert index["utterances"] == len(utts) and len(index["shards"]) == -(-len(utts) // 8)
    with tarfile.open(out / index["shards"][0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())
    assert len(names) == 16 and {n.rsplit(".", 1)[1] for n in names} == {"flac", "json"}
    assert meta["text"] in {u.text for u in utts}
    assert sorted(read_index(index["spec"])["transcripts"]) == sorted(u.text for u in utts)


def test_each_rank_gets_the_same_number_of_batches_and_different_data(shards):
    _, index = shards
    ranks = [_stream(index, rank=r, world=2) for r in (0, 1)]
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == len(ranks[0])
    first = [{i for b in bs[:1] for i in b.ids} for bs in batches]
    assert not first[0] & first[1]                       # disjoint shards -> different utterances
    again = list(_stream(index, rank=0, world=2))
    assert [b.ids for b in again] == [b.ids for b in batches[0]]     # deterministic for (seed, epoch)
    ranks[0].set_epoch(1)
    assert [b.ids for b in ranks[0]] != [b.ids for b in batches[0]]  # and reshuffled per epoch


def test_resume_skips_batches_already_used(shards):
    _, index = shards
    full = [b.ids for b in _stream(index)]
    resumed = _stream(index)
    resumed.set_epoch(0, start_batch=2)
    assert [b.ids for b in resumed] == full[2:]


def test_missing_shard_is_a_clear_error(shards):
    out, _ = shards
    with pytest.raises(ConfigError, match="does not exist"):
        _stream({"spec": str(out / "shard-{000000..000999}.tar")})


def test_a_damaged_shard_or_sample_is_reported_and_the_rest_is_read(shards, tmp_path):
    out, index = shards
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in index["shards"] + ["index.json", "transcripts.txt"]:
        (copy / name).write_bytes((out / name).read_bytes())
    first, second = (copy / n for n in index["shards"][:2])
    with tarfile.open(out / first.name) as tar:                   # one sample's FLAC garbled
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    garbled = next(m.name for m, _ in members if m.name.endswith(".flac"))
    with tarfile.open(first, "w") as tar:
        for m, data in members:
            data = b"not a flac file" if m.name == garbled else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    second.write_bytes(second.read_bytes()[:1500])                  # a copy cut short, inside its first sample
    spec = index["spec"].replace(str(out), str(copy))
    batches = list(_stream({"spec": spec}))
    reasons = {b.id: b.reason for batch in batches for b in batch.bad}
    assert len(batches) == len(_stream({"spec": spec})) and sum(len(b) for b in batches) > 0
    assert any(f"{second.name} is damaged" in r for r in reasons.values())
    assert any(garbled[:-5] in k and "cannot be read" in r for k, r in reasons.items())
    for name in index["shards"]:
        (copy / name).write_bytes(b"")
    with pytest.raises(ConfigError, match="hold no readable utterance"):
        list(_stream({"spec": spec}))


def test_training_reads_shards(corpus, shards, tmp_path):
    _, index = shards
    recipe = load_recipe(REPO / "configs" / "demo_ctc.yaml",
                         tiny_overrides(corpus, **{"data.train": index["spec"], "train.epochs": 1, "data.num_workers": 2}))
    summary = Trainer(recipe, tmp_path, progress=False).fit()
    assert summary["steps"] > 0 and (tmp_path / "best.pt").is_file()
    assert torch.load(tmp_path / "best.pt", weights_only=True)["tokenizer"]["kind"] == "char"


def test_resharding_a_folder_replaces_its_shards(corpus, tmp_path):
    """Shards from an earlier run into the same folder must not join the new ones (they would repeat data)."""
    utts, _ = read_manifest(corpus / "train.jsonl")
    (tmp_path / "notes.tar").write_bytes(b"not ours")                # only shard-NNNNNN.tar files are replaced
    first = write_shards(corpus / "train.jsonl", tmp_path, shard_size=4, progress=False)
    second = write_shards(corpus / "train.jsonl", tmp_path, shard_size=16, progress=False)
    assert len(first["shards"]) > len(second["shards"]) == -(-len(utts) // 16)
    assert sorted(p.name for p in tmp_path.glob("shard-*.tar")) == second["shards"]
    keys = [name for shard in second["shards"] for name in tarfile.open(tmp_path / shard).getnames() if name.endswith(".json")]
    assert len(keys) == len(utts) == second["utterances"] and (tmp_path / "notes.tar").read_bytes() == b"not ours"


def test_a_manifest_with_nothing_readable_writes_no_shards(tmp_path, capsys):
    from asrforge.cli import main

    write_manifest(tmp_path / "gone.jsonl", [Utterance(str(tmp_path / f"gone{i}.wav"), 1.0, "gone", id=f"g{i}")
                                             for i in range(3)])
    assert main(["shard", str(tmp_path / "gone.jsonl"), "--out", str(tmp_path / "sh")]) == 2
    err = capsys.readouterr().err
    assert f"none of the 3 item(s) of {tmp_path / 'gone.jsonl'} could be read (the first: audio file" in err
    assert "does not exist" in err and not list((tmp_path / "sh").glob("*"))
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["shard", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "sh")]) == 2
    assert "lists no utterances" in capsys.readouterr().err


def test_whole_16k_flac_files_are_copied_and_everything_else_is_encoded_in_manifest_order(tmp_path):
    """A whole 16 kHz mono FLAC file goes into the shard byte for byte; a slice, another rate or format is
    decoded and re-encoded; a file that cannot be read is reported; the shuffled order holds across threads."""
    wave = (0.2 * np.sin(np.arange(8000) / 7)).astype(np.float32)
    sf.write(tmp_path / "whole.flac", wave, 16000)
    sf.write(tmp_path / "rate8k.flac", wave, 8000)
    sf.write(tmp_path / "plain.wav", wave, 16000)
    (tmp_path / "broken.flac").write_bytes(b"fLaC but nothing after")
    utts = [Utterance(str(tmp_path / "whole.flac"), 0.5, "whole", id="whole"),
            Utterance(str(tmp_path / "whole.flac"), 0.25, "slice", offset=0.25, id="slice"),
            Utterance(str(tmp_path / "rate8k.flac"), 1.0, "eight", id="eight"),
            Utterance(str(tmp_path / "plain.wav"), 0.5, "plain", id="plain"),
            Utterance(str(tmp_path / "broken.flac"), 0.5, "broken", id="broken")]
    utts += [Utterance(str(tmp_path / "plain.wav"), 0.5, f"copy {i}", id=f"copy{i}") for i in range(40)]
    utts += [Utterance(str(tmp_path / "plain.wav"), 0.5, "twin", id="twin") for _ in range(2)]   # two imports' ids
    write_manifest(tmp_path / "m.jsonl", utts)
    index = write_shards(tmp_path / "m.jsonl", tmp_path / "out", shard_size=100, progress=False, workers=3)
    assert index["utterances"] == 46 and [s["item"] for s in index["skipped"]] == ["broken"]
    assert "broken.flac" in index["skipped"][0]["reason"]
    with tarfile.open(tmp_path / "out" / index["shards"][0]) as tar:
        members = {n: tar.extractfile(n).read() for n in tar.getnames()}
    keys = [n[:-5] for n in members if n.endswith(".json")]
    random.Random(0).shuffle(shuffled := [u.id for u in utts])      # write_shards' seed 0
    twins = iter(["twin", "twin_2"])
    expected = [next(twins) if k == "twin" else k for k in shuffled if k != "broken"]
    assert keys == expected and sorted(keys) == sorted(expected)
    assert json.loads(members["twin_2.json"])["id"] == "twin"
    assert len(list(wds.WebDataset(str(tmp_path / "out" / index["shards"][0]), shardshuffle=False))) == 46
    assert members["whole.flac"] == (tmp_path / "whole.flac").read_bytes()
    decoded = {k: sf.read(io.BytesIO(members[f"{k}.flac"]), dtype="float32") for k in ("slice", "eight", "plain")}
    assert all(sr == 16000 for _, sr in decoded.values())
    assert decoded["slice"][0].size == 4000 and decoded["eight"][0].size == 16000      # 0.25 s; 1 s resampled to 16 kHz
    assert json.loads(members["eight.json"])["duration"] == 1.0
