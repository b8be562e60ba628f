"""Hugging Face decoders through ``from_pytorch``: GPT-2 and the Llama
family (Llama, Mistral with its sliding window, Qwen2), built from small
configs (no download), traced with transformers' 4.x fx tracer, run
privately with token ids shared as one-hot rows and a public (left-padded)
attention mask, against float64 PyTorch; and fine-tuned privately.

Tolerances (f = 16 unless said). The models keep transformers' default
initialisation (std 0.02), so the residual stream is small (about 0.05)
and each of its entries carries a few units of 2^-16 (1.5e-5) from the
truncations of the projections, the softmax (3e-4 of a row's weights,
times values of about 0.05) and the activations; the final norm divides
the stream by its rms (about 0.05), which makes 3 units 3 * 1.5e-5 / 0.05
= 9e-4 on a normalised entry, and the head (rows of 32 weights of about
0.016: |W| row sums about 0.5) passes about that to a logit: 2e-3 (measured
2.5e-4 to 4e-4; logits are about 0.4). Before RMSNorm converted as a layer
(whose statistics keep more bits) a 2-layer Llama was 7.6e-3 off.
"""

import random
import warnings

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import usable

T = pytest.importorskip(
    "transformers", reason="transformers is a test dependency (pip install '.[test]')"
)
pytest.importorskip(
    "transformers.utils.fx",
    reason="the fx tracer exists in transformers 4.x only; the test extra pins transformers<5",
)

V, S = 40, 8  # vocabulary and sequence length
LOGITS_TOL = 2e-3  # module docstring


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def onehot(ids):
    return cryptgpu.cryptensor(F.one_hot(ids, V).double(), src=1)


def decoder(kind, attn="sdpa", head="lm"):
    if kind in ("opt", "gptj", "gptneo", "bloom"):
        attn = None
    """A 2-layer decoder of width 32; 10 positions for GPT-2, fewer than
    the 10 to 20 tokens transformers' tracer may draw for its dummy input."""
    torch.manual_seed(0)
    small = dict(vocab_size=V, pad_token_id=0, num_labels=3)
    if attn is not None:  # None: the model's own (OPT, GPT-J, GPT-Neo, Bloom have no other)
        small["attn_implementation"] = attn
    llama_like = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=16,
        **small,
    )
    if kind == "gpt2":
        cfg = T.GPT2Config(
            n_layer=2,
            n_embd=32,
            n_head=2,
            n_positions=10,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **small,
        )
        cls = T.GPT2LMHeadModel if head == "lm" else T.GPT2ForSequenceClassification
    elif kind == "llama":
        cfg = T.LlamaConfig(**llama_like)
        cls = T.LlamaForCausalLM if head == "lm" else T.LlamaForSequenceClassification
    elif kind == "mistral":  # a window of 3 on 8 tokens: the sliding mask matters
        cfg = T.MistralConfig(sliding_window=3, **llama_like)
        cls = T.MistralForCausalLM
    elif kind == "qwen2":
        cfg = T.Qwen2Config(**llama_like)
        cls = T.Qwen2ForCausalLM
    elif kind == "opt":
        cfg = T.OPTConfig(
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            word_embed_proj_dim=32,
            dropout=0.0,
            **small,
        )
        cls = T.OPTForCausalLM
    elif kind == "gptj":
        cfg = T.GPTJConfig(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=16, **small)
        cls = T.GPTJForCausalLM
    elif kind == "gptneo":  # a local layer with a window of 3
        cfg = T.GPTNeoConfig(
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            attention_types=[[["global", "local"], 1]],
            max_position_embeddings=16,
            window_size=3,
            **small,
        )
        cls = T.GPTNeoForCausalLM
    else:
        cfg = T.BloomConfig(hidden_size=32, n_layer=2, n_head=4, **small)
        cls = T.BloomForCausalLM
    return cls(cfg).eval()


def left_padded(gen):
    ids = torch.randint(1, V, (3, S), generator=gen)
    mask = torch.ones(3, S, dtype=torch.long)
    mask[1, :3] = 0  # left padding, as for generation
    mask[2, :1] = 0
    return ids * mask, mask


@pytest.fixture
def local():
    cryptgpu.init(seed=3)
    yield
    cryptgpu.uninit()


def reference(kind, attn, ids, mask=None):
    """torch's logits in float64, or in float32 where transformers' float64
    form gives NaN (its eager mask adds the dtype minimum twice on a
    left-padded row: -inf), and for GPT-Neo, which computes its scores in
    float32 itself: in a float64 model its float32 minimum plus the float64
    mask's stays finite, so a left-padded row weighs the future too, which
    no float32 or bfloat16 GPT-Neo does (float32 is within 1e-6 of float64
    elsewhere, far inside LOGITS_TOL)."""
    with torch.no_grad():
        want = decoder(kind, attn).double()(ids, attention_mask=mask).logits
        if torch.isnan(want).any() or kind == "gptneo":
            want = decoder(kind, attn)(ids, attention_mask=mask).logits.double()
    return want


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "mistral", "qwen2"])
def test_decoder_logits_match_float64(local, kind, attn):
    """Private one-hot ids, with no mask and with a left-padded one: the
    logits of every position within LOGITS_TOL of torch's in the same
    attention form, the padded ones too (a padded token's row has nothing
    to attend to: sdpa's bool mask gives it zeros, eager's dtype minimum
    equal weights; until 2026-12-06 our eager form kept its scores)."""
    m = decoder(kind, attn)
    ids, mask = left_padded(torch.Generator().manual_seed(1))
    pm = cryptgpu.nn.from_pytorch(m, ids).encrypt()
    want = reference(kind, attn, ids)
    want_masked = reference(kind, attn, ids, mask)
    got = pt(pm(onehot(ids)).logits)
    assert (got - want).abs().max() <= LOGITS_TOL
    got = pt(pm(onehot(ids), attention_mask=mask).logits)
    assert (got - want_masked).abs().max() <= LOGITS_TOL
    # the mask changes the kept rows' logits far more than the tolerance
    assert (want_masked - want)[mask.bool()].abs().max() > 20 * LOGITS_TOL


@pytest.mark.parametrize("kind", ["opt", "gptj", "gptneo", "bloom"])
def test_decoders_that_make_their_own_mask(local, kind):
    """OPT, GPT-J, GPT-Neo (a local layer with a window of 3) and Bloom
    (ALiBi: public biases added by alibi.baddbmm) make their causal mask in
    a method of their own with an in-place write, which the graph keeps as
    one public step. Logits of every position of left-padded sequences
    within LOGITS_TOL of torch's (a padded token's row, masked everywhere
    by the dtype minimum, has equal weights in torch: until 2026-12-06 ours
    gave it zeros, and a left-padded OPT's loss, which reads the last pad
    position's logits, was wrong)."""
    m = decoder(kind)
    ids, mask = left_padded(torch.Generator().manual_seed(1))
    pm = cryptgpu.nn.from_pytorch(m, ids).encrypt()
    want = reference(kind, None, ids)
    want_masked = reference(kind, None, ids, mask)
    assert (pt(pm(onehot(ids)).logits) - want).abs().max() <= LOGITS_TOL
    got = pt(pm(onehot(ids), attention_mask=mask).logits)
    assert (got - want_masked).abs().max() <= LOGITS_TOL
    assert (want_masked - want)[mask.bool()].abs().max() > LOGITS_TOL  # the mask matters


def test_sequence_classification_pools_the_last_token_from_public_ids(local):
    """GPT2/LlamaForSequenceClassification pool the last non-pad token,
    found from the ids: with public ids within LOGITS_TOL of torch; with
    shared one-hot ids a NotImplementedError naming the private ids (their
    pad positions cannot be found without opening them)."""
    ids, mask = left_padded(torch.Generator().manual_seed(2))
    ids = ids.flip(1)  # right padding: the last real token varies per row
    mask = mask.flip(1)
    for kind in ("gpt2", "llama"):
        m = decoder(kind, head="cls")
        pm = cryptgpu.nn.from_pytorch(m, ids).encrypt()
        with torch.no_grad():
            want = m.double()(ids, attention_mask=mask).logits
        got = pt(pm(ids, attention_mask=mask).logits)
        assert got.shape == (3, 3)
        assert (got - want).abs().max() <= LOGITS_TOL
        with pytest.raises(NotImplementedError, match="private token ids"):
            pm(onehot(ids), attention_mask=mask)
    x = cryptgpu.cryptensor(torch.tensor([1.5, -2.0]))
    assert torch.allclose(pt(x * x), torch.tensor([2.25, 4.0], dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decoder_fine_tunes_privately(kind):
    """A language-model loss on shifted tokens, at 20 fractional bits (the
    README: LayerNorm/RMSNorm gradients are amplified by 1/std, 50 at this
    initialisation; at 16 bits they are 1e-2 relative): every gradient
    within 2e-3 of torch's (gradients up to 0.6; 50 * a few units of 2^-20
    each through two layers; measured 3.8e-4), then two SGD steps, and
    the weights written back by to_pytorch within 2e-3 of torch's."""
    cryptgpu.init(seed=4, precision_bits=20)
    try:
        m = decoder(kind)
        ids, mask = left_padded(torch.Generator().manual_seed(3))
        tgt = ids.roll(-1, 1)
        pm = cryptgpu.nn.from_pytorch(m, ids).encrypt().train()
        md = decoder(kind).double().train()
        opt = cryptgpu.optim.SGD(pm.parameters(), lr=0.5)
        topt = torch.optim.SGD(md.parameters(), lr=0.5)
        target = cryptgpu.cryptensor(F.one_hot(tgt.reshape(-1), V).double())
        theirs = dict(md.named_parameters())
        for step in range(2):
            pm.zero_grad()
            out = pm(onehot(ids), attention_mask=mask).logits
            loss = cryptgpu.nn.CrossEntropyLoss()(out.reshape(-1, V), target)
            loss.backward()
            topt.zero_grad()
            tout = md(ids, attention_mask=mask).logits
            F.cross_entropy(tout.reshape(-1, V), tgt.reshape(-1)).backward()
            if step == 0:
                ours = dict(pm.named_parameters())
                assert set(ours) == set(theirs)
                for k, p in ours.items():
                    assert (pt(p.grad) - theirs[k].grad).abs().max() <= 2e-3, k
            opt.step()
            topt.step()
        back = dict(pm.decrypt().to_pytorch(decoder(kind)).named_parameters())
        for k, p in theirs.items():
            assert (back[k].double() - p.detach()).abs().max() <= 2e-3, k
    finally:
        cryptgpu.uninit()


def test_converting_leaves_python_random_and_torch_alone(local):
    """transformers' tracer draws its dummy input's sizes from Python's
    random module: converting must not move the user's random stream
    (a seeded data shuffle after from_pytorch would change), nor leave
    torch's functions patched."""
    m = decoder("gpt2")
    random.seed(7)
    before = random.getstate()
    tensor_fn, arange_fn = torch.tensor, torch.arange
    cryptgpu.nn.from_pytorch(m)
    assert random.getstate() == before
    assert torch.tensor is tensor_fn and torch.arange is arange_fn


def test_a_private_attention_mask_is_refused(local):
    """The masks made from attention_mask are computed in plaintext: a
    shared mask is a NotImplementedError saying so (until 2026-12-06 it was
    read as zeros, every position masked, and the logits came out wrong)."""
    ids, mask = left_padded(torch.Generator().manual_seed(4))
    for kind in ("llama", "opt"):
        pm = cryptgpu.nn.from_pytorch(decoder(kind), ids).encrypt()
        with pytest.raises(NotImplementedError, match="attention_mask must be public"):
            pm(onehot(ids), attention_mask=cryptgpu.cryptensor(mask.double()))
    x = cryptgpu.cryptensor(torch.tensor([1.5, -2.0]))
    assert torch.allclose(pt(x * x), torch.tensor([2.25, 4.0], dtype=torch.float64), atol=1e-4)


def test_attention_dropout_follows_train_and_eval(local):
    """GPT-2's sdpa form passes dropout_p = attn_pdrop only in training: the
    converted model keeps that (until 2026-12-06 the mask step, a function
    of its own in each trace, made the train and eval graphs look different:
    converting warned, and training dropped no attention weights). With
    only attention dropout (p = 0.5), eval mode gives torch's logits (within
    LOGITS_TOL) and train mode other ones (more than 10x that apart)."""
    torch.manual_seed(0)
    cfg = T.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, n_positions=10, vocab_size=V,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.5, attn_implementation="sdpa",
    )  # fmt: skip
    m = T.GPT2LMHeadModel(cfg).eval()
    ids, _ = left_padded(torch.Generator().manual_seed(5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "train mode differs" warning
        pm = cryptgpu.nn.from_pytorch(m, ids).encrypt()
    with torch.no_grad():
        want = m.double()(ids).logits
    assert (pt(pm(onehot(ids)).logits) - want).abs().max() <= LOGITS_TOL
    pm.train()
    with torch.no_grad():
        dropped = pt(pm(onehot(ids)).logits)
    assert (dropped - want).abs().max() > 10 * LOGITS_TOL


def test_subclasses_configs_and_batches_transformers_users_write(local):
    """A user's subclass of a transformers class converts (transformers'
    tracer takes classes by name: it was refused with a 6,000-character
    list); an architecture the tracer does not know is refused in a short
    message; converting leaves config.use_cache as it was; a sequence
    classifier without a pad token (it pools the last position, one
    sequence at a time in torch) converts and pools each sequence's last
    position; a bfloat16 Llama's RMSNorm converts as our layer (its
    logits within LOGITS_TOL of its float64 form; traced as operations
    they were 4.2e-3 off)."""

    class MyGPT(T.GPT2LMHeadModel):
        pass

    ids, _ = left_padded(torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    m = MyGPT(decoder("gpt2").config).eval()
    assert m.config.use_cache
    pm = cryptgpu.nn.from_pytorch(m, ids).encrypt()
    assert m.config.use_cache
    with torch.no_grad():
        want = m.double()(ids).logits
    assert (pt(pm(onehot(ids)).logits) - want).abs().max() <= LOGITS_TOL

    neox = T.GPTNeoXForCausalLM(
        T.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=4, vocab_size=V)
    )  # fmt: skip
    with pytest.raises(NotImplementedError, match="does not trace") as e:
        cryptgpu.nn.from_pytorch(neox)
    assert len(str(e.value)) < 400

    torch.manual_seed(0)
    cfg = T.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=10, vocab_size=V, num_labels=3)
    cls = T.GPT2ForSequenceClassification(cfg).eval()
    assert cls.config.pad_token_id is None
    pc = cryptgpu.nn.from_pytorch(cls).encrypt()
    with torch.no_grad():
        each = torch.cat([cls.double()(ids[i : i + 1]).logits for i in range(3)])
    assert (pt(pc(onehot(ids)).logits) - each).abs().max() <= LOGITS_TOL

    llama = decoder("llama").to(torch.bfloat16)
    pl = cryptgpu.nn.from_pytorch(llama, ids).encrypt()
    assert any(type(x).__name__ == "RMSNorm" for x in pl.modules())
    with torch.no_grad():
        want = llama.double()(ids).logits
    assert (pt(pl(onehot(ids)).logits) - want).abs().max() <= LOGITS_TOL


def test_4d_attention_masks_give_torchs_logits_or_are_refused(local):
    """transformers takes a prepared 4-D attention_mask as it is. Llama and
    Mistral hand theirs to transformers' mask functions, which the graph
    keeps as one public step run on the mask given: a [B, 1, 1, S] padding
    mask of -1e9 (no causal part: torch's tokens then see later ones too),
    a [B, 1, S, S] causal and padding one of float32's minimum, and (sdpa)
    a bool one give logits within LOGITS_TOL of torch's float64 ones (until
    2026-12-06 sdpa read a -1e9 fill as keeping every position: 1.4 off).
    GPT-2 views a mask of rank < 4 as [B, -1] before its mask step: its
    graph follows that branch only, and a 4-D mask is refused with a
    MaskShapeError (a ValueError and a NotImplementedError) naming the
    [batch, seq] form (until 2026-12-06 it ran: logits 3 off, silently);
    so is one for OPT, whose positions are a cumsum of the mask (torch
    fails on it)."""
    ids, mask = left_padded(torch.Generator().manual_seed(7))
    keep = torch.ones(S, S, dtype=torch.bool).tril() & mask[:, None, None, :].bool()
    low = torch.finfo(torch.float32).min
    forms = {
        "padding": (1.0 - mask[:, None, None, :].double()) * -1e9,
        "causal": torch.zeros(3, 1, S, S, dtype=torch.float64).masked_fill(~keep, low),
        "bool": keep,
    }
    for kind, attn in (("llama", "sdpa"), ("llama", "eager"), ("mistral", "sdpa")):
        pm = cryptgpu.nn.from_pytorch(decoder(kind, attn), ids).encrypt()
        md = decoder(kind, attn).double()
        for name, am in forms.items():
            if name == "bool" and attn == "eager":  # eager adds a bool mask as 0/1
                continue
            with torch.no_grad():
                want = md(ids, attention_mask=am).logits
            got = pt(pm(onehot(ids), attention_mask=am).logits)
            assert (got - want).abs().max() <= LOGITS_TOL, (kind, attn, name)
        with torch.no_grad():  # the 4-D padding mask differs from the 2-D one
            by_4d = md(ids, attention_mask=forms["padding"]).logits
        assert (by_4d - reference(kind, attn, ids, mask)).abs().max() > 20 * LOGITS_TOL
    MaskShapeError = cryptgpu.nn.hf.MaskShapeError
    for kind in ("gpt2", "opt"):
        pm = cryptgpu.nn.from_pytorch(decoder(kind), ids).encrypt()
        for am in forms.values():
            with pytest.raises(MaskShapeError, match=r"takes a \[batch, seq\] attention_mask"):
                pm(onehot(ids), attention_mask=am)
    assert issubclass(MaskShapeError, ValueError) and issubclass(
        MaskShapeError, NotImplementedError
    )
    assert usable()


def test_masks_of_one_row_that_torch_takes(local):
    """Llama's sdpa form takes a mask without padding of shape [1, S] or
    [S] (transformers then skips the mask): the logits are torch's (within
    LOGITS_TOL; until 2026-12-06 an IndexError); with padding torch's
    IndexError, ours too."""
    # no pad token: its embedding row is zeros, which RMSNorm divides by
    # sqrt(eps) = 1e-3, a truncation's 2^-16 then 1.5e-2 on a logit
    ids = torch.randint(1, V, (3, S), generator=torch.Generator().manual_seed(8))
    m = decoder("llama")
    pm = cryptgpu.nn.from_pytorch(m, ids).encrypt()
    with torch.no_grad():
        want = m.double()(ids).logits
    for am in (torch.ones(1, S, dtype=torch.long), torch.ones(S, dtype=torch.long)):
        assert (pt(pm(onehot(ids), attention_mask=am).logits) - want).abs().max() <= LOGITS_TOL
    padded = torch.ones(S, dtype=torch.long)
    padded[:2] = 0
    with pytest.raises(IndexError), torch.no_grad():
        m(ids, attention_mask=padded)
    with pytest.raises(IndexError):
        pm(onehot(ids), attention_mask=padded)
    assert usable()


def test_the_conversion_check_of_models_that_compute_in_float32(local):
    """transformers' Llama computes its RMSNorm and eager softmax in float32
    whatever the weights' dtype, so the check's float64 reference is as
    precise as float32 there: its tolerance is float32's (1e-4), where it
    was 1e-6 and a correctly converted Llama at initializer_range 0.2
    failed its check (1.4e-6 off) in 2 of these 5 dummy inputs; GPT-2
    (float64 throughout) keeps 1e-6. A real disagreement (a forward hook
    on lm_head, which the graph does not run) names its cause and the
    largest difference, not an isinstance branch (our ModelOutput is not
    transformers' class, but holds the same fields)."""
    cfg = decoder("llama", "eager").config
    cfg.initializer_range = 0.2
    for seed in range(5):
        torch.manual_seed(0)
        m = T.LlamaForCausalLM(cfg).eval()
        dummy = torch.randint(3, V, (2, S), generator=torch.Generator().manual_seed(seed))
        cryptgpu.nn.from_pytorch(m, dummy)
    ids = torch.randint(1, V, (2, S), generator=torch.Generator().manual_seed(9))
    assert cryptgpu.nn.check.reference(m, (ids,))[2] == 1e-4
    assert cryptgpu.nn.check.reference(decoder("gpt2", "eager"), (ids,))[2] == 1e-6
    m.lm_head.register_forward_hook(lambda mod, i, out: out * 2)
    with pytest.raises(RuntimeError, match="torch forward hooks on lm_head") as e:
        cryptgpu.nn.from_pytorch(m, ids)
    assert "largest difference" in str(e.value) and "isinstance" not in str(e.value)


def test_rms_norms_convert_under_a_float64_default_dtype(local):
    """Under torch.set_default_dtype(torch.float64) the Llama family's
    RMSNorm (and Qwen3's per-head q/k norms) converts as our RMSNorm layer,
    as under float32: until 2026-12-06 the recognition check drew its
    sample in the default dtype, compared float32 with float64, failed, and
    every norm was traced as its operations (a Llama's logits 3.2e-3 off,
    over LOGITS_TOL). A float32 Llama converted under the float64 default,
    and a Qwen3 built under it (a float64 model): every norm a layer (2
    layers: 5 for Llama, 9 with Qwen3's q/k norms), logits within LOGITS_TOL
    (module docstring) of float64 torch's."""
    ids = torch.randint(1, V, (3, S), generator=torch.Generator().manual_seed(10))
    llama = decoder("llama")  # float32, built under the float32 default
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(0)
        qwen3 = T.Qwen3ForCausalLM(
            T.Qwen3Config(vocab_size=V, pad_token_id=0, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=8, max_position_embeddings=16)
        ).eval()  # fmt: skip
        assert qwen3.model.norm.weight.dtype == torch.float64
        for m, norms in ((llama, 5), (qwen3, 9)):
            pm = cryptgpu.nn.from_pytorch(m).encrypt()
            assert sum(type(x).__name__ == "RMSNorm" for x in pm.modules()) == norms
            with torch.no_grad():
                want = m.double()(ids).logits
            assert (pt(pm(onehot(ids)).logits) - want).abs().max() <= LOGITS_TOL
    finally:
        torch.set_default_dtype(default)
