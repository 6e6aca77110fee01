"""The text families' pieces against their definitions: packing, the masked losses, cached
sampling against the full forward pass, top-k, and the text VAE's KL term and bound."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import text_set

from aigc.models import MODELS
from aigc.models.layers import gaussian_kl, gaussian_kl_terms
from aigc.models.text.base import finish_rows, pack, pick_next, row_lengths, shifted_nll
from aigc.params import ParamsError
from aigc.text_sampling import decode_at, homotopy, model_rows, reconstructions
from aigc.text_sets import BOS, EOS, PAD, TokenSet, Vocabulary


def tokens(conditional: bool = False, count: int = 12) -> TokenSet:
    texts = text_set(count, seed=1)
    vocabulary = Vocabulary.from_texts(texts.texts)
    return TokenSet(vocabulary.rows(texts.texts), texts.labels, texts.classes, vocabulary)


def model(family: str, conditional: bool = False, **fields):
    data = tokens()
    config = MODELS[family].Config(**data.config_fields(), conditional=conditional, **fields)
    torch.manual_seed(0)
    return MODELS[family](config).eval(), data


def test_rows_hold_bos_the_characters_eos_then_padding_and_decode_back():
    vocabulary = Vocabulary.from_texts(["abc", "ab"])
    rows = vocabulary.rows(["abc", "b", "cab"], length=4)  # 3 characters are cut to 2
    assert rows.shape == (3, 4) and (rows[:, 0] == BOS).all()
    assert [vocabulary.decode(row) for row in rows] == ["ab", "b", "ca"]
    assert rows[1].tolist()[2:] == [EOS, PAD] and (rows[[0, 2], -1] == EOS).all()
    assert row_lengths(torch.from_numpy(rows)).tolist() == [4, 3, 4]
    assert vocabulary.rows(["abc", "b"]).shape == (2, 5)  # the longest text + 2


def test_pack_keeps_every_token_in_order_with_its_text_position_and_label():
    rows = torch.tensor([[BOS, 5, 6, EOS, PAD], [BOS, 7, EOS, PAD, PAD], [BOS, 8, 9, 10, EOS]])
    labels = torch.tensor([0, 1, 2])
    ids, positions, documents, token_labels = pack(rows, labels, context=4)
    assert ids.shape == (3, 5)  # 12 tokens in windows of 5, the last padded
    stream = ids.flatten()[:12].tolist()
    assert stream == [BOS, 5, 6, EOS, BOS, 7, EOS, BOS, 8, 9, 10, EOS]
    assert positions.flatten()[:12].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]
    assert documents.flatten()[:12].tolist() == [0] * 4 + [1] * 3 + [2] * 5
    assert token_labels.flatten()[:12].tolist() == [0] * 4 + [1] * 3 + [2] * 5
    assert (ids.flatten()[12:] == PAD).all() and (documents.flatten()[12:] == 3).all()


def test_shifted_nll_is_the_cross_entropy_of_the_characters_and_eos_only():
    rows = torch.tensor([[BOS, 5, EOS, PAD], [BOS, 6, 7, EOS]])
    logits = torch.randn(2, 3, 9, generator=torch.Generator().manual_seed(0))
    expected = [
        -F.log_softmax(logits[0, 0], 0)[5] - F.log_softmax(logits[0, 1], 0)[EOS],
        sum(-F.log_softmax(logits[1, t], 0)[rows[1, t + 1]] for t in range(3)),
    ]
    assert torch.allclose(shifted_nll(logits, rows), torch.stack(expected))


def test_pick_next_with_top_1_is_the_argmax_and_never_draws_pad_or_bos():
    logits = torch.randn(50, 9, generator=torch.Generator().manual_seed(0))
    logits[:, PAD] = logits[:, BOS] = 100.0  # the likeliest, but never drawn
    rng = torch.Generator().manual_seed(1)
    picked = pick_next(logits, 1.0, 1, rng)
    assert torch.equal(picked, logits[:, 2:].argmax(1) + 2)
    drawn = pick_next(logits, 2.0, 0, rng)
    assert not ((drawn == PAD) | (drawn == BOS)).any() and len(set(drawn.tolist())) > 2


def test_finish_rows_closes_unfinished_rows_and_pads_after_the_end():
    rows = torch.tensor([[BOS, 5, EOS, PAD], [BOS, 5, 6, 7]])
    finished = finish_rows(rows.clone(), torch.tensor([True, False]))
    assert finished.tolist() == [[BOS, 5, EOS, PAD], [BOS, 5, 6, EOS]]


@pytest.mark.parametrize("family", ["charrnn", "gpt", "gpt-rotary"])
@pytest.mark.parametrize("conditional", [False, True])
def test_step_by_step_sampling_sees_what_the_full_forward_pass_sees(family, conditional):
    """The recurrent state (charrnn) and the key/value cache (gpt, with either kind of
    positions) give, token by token, the logits that one causal pass over the whole row gives:
    sampling draws from the model that `token_nll` scores."""
    fields = {"hidden_size": 16, "layers": 2} if family == "charrnn" else {
        "layers": 2, "width": 16, "heads": 2,
        "positions": "rotary" if family == "gpt-rotary" else "learned"}  # fmt: skip
    family = family.split("-")[0]
    network_model, data = model(family, conditional, **fields)
    rows = torch.from_numpy(data.tokens[:3, :20])
    labels = torch.tensor([0, 1, 0]) if conditional else None
    network = network_model.network
    with torch.no_grad():
        if family == "charrnn":
            whole, _ = network(rows, labels)
            state, steps = None, []
            for t in range(rows.shape[1]):
                logits, state = network(rows[:, t : t + 1], labels, state)
                steps.append(logits)
        else:
            length = rows.shape[1]
            positions = torch.arange(length).expand_as(rows)
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            whole = network(rows, positions, labels, causal)
            caches, steps = [{} for _ in network.blocks], []
            for t in range(length):
                where = torch.full((3, 1), t)
                steps.append(network(rows[:, t : t + 1], where, labels, None, caches))
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_attention_stays_inside_each_packed_text(positions):
    """A text's loss in a packed window is the loss it has alone: nothing leaks between texts."""
    gpt, data = model("gpt", layers=2, width=16, heads=2, context=512, positions=positions)
    rows = torch.from_numpy(data.tokens[:4])
    rows = rows[:, : int(row_lengths(rows).max())]
    ids, positions, documents, _ = pack(rows, None, context=512)
    assert len(ids) == 1
    with torch.no_grad():
        logits = gpt.forward_windows(ids[:, :-1], positions[:, :-1], documents[:, :-1], None)
        alone = gpt.token_nll(rows)
    targets = ids[:, 1:]
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    predicted = (documents[:, 1:] == documents[:, :-1]) & (targets != PAD)
    for text in range(4):
        mine = predicted & (documents[:, :-1] == text)
        assert torch.allclose(losses[mine].sum(), alone[text], rtol=1e-4)


def test_rotary_attention_depends_on_relative_positions_only():
    """RoPE turns queries and keys by their positions, so q . k depends only on their distance:
    shifting every position by one constant leaves a rotary gpt's logits unchanged (and moves a
    learned-position gpt's)."""
    rows = None
    for positions, moves in (("rotary", False), ("learned", True)):
        gpt, data = model("gpt", layers=2, width=16, heads=2, positions=positions)
        rows = torch.from_numpy(data.tokens[:3, :12])
        length = rows.shape[1]
        where = torch.arange(length).expand_as(rows)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        with torch.no_grad():
            logits = gpt.network(rows, where, None, causal)
            shifted = gpt.network(rows, where + 7, None, causal)
        assert torch.allclose(logits, shifted, atol=1e-5) != moves
    with pytest.raises(ParamsError, match="train.gpt.width = 18"):
        model("gpt", width=18, heads=2, positions="rotary")  # head width 9: no pairs


def test_the_kl_term_is_the_closed_form_of_two_gaussians():
    mu = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    logvar = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    posterior = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros(5, 3), torch.ones(5, 3))
    expected = torch.distributions.kl_divergence(posterior, prior)
    assert torch.allclose(gaussian_kl_terms(mu, logvar), expected, atol=1e-6)
    assert torch.allclose(gaussian_kl(mu, logvar), expected.sum(), atol=1e-5)
    assert torch.allclose(
        gaussian_kl_terms(torch.zeros(2, 2), torch.zeros(2, 2)), torch.zeros(2, 2)
    )


def test_the_text_vae_bound_is_reconstruction_plus_kl_and_its_loss_applies_free_bits():
    vae, data = model("textvae", latent_dim=4, hidden_size=16, embedding_dim=8,
                      free_bits=0.5, kl_warmup_steps=0, input_dropout=0.0)  # fmt: skip
    rows = torch.from_numpy(data.tokens[:6])
    with torch.no_grad():
        bound = vae.token_nll(rows)
        mu, logvar = vae.posterior_of(rows, None)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1234))
        z = mu + eps * (0.5 * logvar).exp()
        trimmed = rows[:, : int(row_lengths(rows).max())]
        reconstruction = shifted_nll(vae.decoder(trimmed[:, :-1], z, None), trimmed)
    kl = gaussian_kl_terms(mu, logvar).sum(1)
    assert torch.allclose(bound, reconstruction + kl, rtol=1e-5)
    assert vae.bound == "elbo" and (kl >= 0).all()

    # The training loss: per character, reconstruction plus the KL of each dimension floored
    # at free_bits (an untrained encoder's KL per dimension is far below 0.5 nats).
    vae.train()
    torch.manual_seed(3)
    losses = vae.train_step(rows, torch.zeros(6, dtype=torch.long))
    characters = int((row_lengths(rows) - 1).sum())
    floor_share = 4 * 0.5 * 6 / characters  # latent_dim x free_bits per text, per character
    assert losses["loss"] == pytest.approx(losses["reconstruction"] + floor_share, rel=1e-4)


def test_kl_annealing_rises_linearly_to_one():
    vae, _ = model("textvae", latent_dim=2, hidden_size=8, embedding_dim=4, kl_warmup_steps=10)
    weights = []
    for step in (0, 5, 10, 20):
        vae.steps_done.fill_(step)
        weights.append(vae.kl_weight())
    assert weights == [0.0, 0.5, 1.0, 1.0]


def test_the_learning_rate_warms_up_then_decays_to_its_floor():
    charrnn, _ = model("charrnn", hidden_size=8, layers=1, learning_rate=0.01, warmup_steps=10,
                       final_learning_rate=0.1)  # fmt: skip
    charrnn.plan(110)
    assert charrnn.learning_rate(0) == pytest.approx(0.001)
    assert charrnn.learning_rate(9) == pytest.approx(0.01)
    assert charrnn.learning_rate(60) == pytest.approx(
        0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi / 2))
    )
    assert charrnn.learning_rate(110) == pytest.approx(0.001)


def test_gpt_rows_that_finish_leave_the_batch_without_changing_the_rest(monkeypatch):
    """Each row of a sampled batch is what it is sampled alone, while rows finish, and leave
    the batch and its key/value cache, at different steps. The draw is made deterministic:
    the likeliest token, with one common character read as `<eos>`, so rows end where their
    own greedy text first holds it (the third character of the first row's greedy text)."""
    gpt, data = model("gpt", True, layers=2, width=32, heads=2, positions="rotary")
    wanted = torch.tensor([0, 1, 1, 0, 1])
    stop = -1

    def first_stop(logits, temperature, top_k, rng):
        logits = logits.float().cpu()
        logits[:, [PAD, BOS]] = -math.inf
        greedy = logits.argmax(1)
        return torch.where(greedy == stop, EOS, greedy)

    monkeypatch.setattr("aigc.models.text.gpt.pick_next", first_stop)
    gpt.network.embed.classes.weight.data.normal_(
        0, 1.0, generator=torch.Generator().manual_seed(0)
    )
    stop = int(gpt.sample(5, wanted)[0, 3])
    batch = gpt.sample(5, wanted)
    lengths = row_lengths(batch)
    assert len(set(lengths.tolist())) > 1 and int(lengths.min()) < gpt.config.max_length
    for row, label in zip(batch, wanted, strict=True):
        assert torch.equal(row, gpt.sample(1, label[None])[0])


def test_the_homotopy_decodes_every_point_with_the_same_noise_and_leaves_sampling_as_it_was():
    """Each point of the homotopy is z decoded at the decode temperature by a generator of the
    given seed: its first text is mu of the first text decoded alone, the same on every call;
    the model's own sampling temperature and top-k are restored afterwards."""
    vae, data = model("textvae", hidden_size=16, latent_dim=4, embedding_dim=8)
    vae.configure_text_sampling(1.5, 3)
    texts = text_set(8, seed=5)
    path = homotopy(vae, texts, steps=3, temperature=0.5, seed=7)
    assert (vae.temperature, vae.top_k) == (1.5, 3)
    assert path == homotopy(vae, texts, steps=3, temperature=0.5, seed=7)
    mu = vae.encode(model_rows(vae, [path["from"]]))
    alone = vae.texts(decode_at(vae, mu, None, 0.5, 7))
    assert path["texts"][0] == alone[0]
    assert (vae.temperature, vae.top_k) == (1.5, 3)
    rebuilt = reconstructions(vae, texts, count=4, temperature=0.5, seed=7)
    assert len(rebuilt) == 4 and rebuilt == reconstructions(vae, texts, 4, 0.5, 7)
