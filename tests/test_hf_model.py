"""A converted transformers model as a ``PreTrainedModel``: the output flags
of ``pm.config`` changed after converting (followed where the traced graph
has what they ask for, else refused), transformers' accessors
(``base_model``, ``get_input_embeddings()``, ``num_parameters()``,
``device``, ``dtype``, ``gradient_checkpointing_enable()``), refusals that
name why a model does not convert, and labels of a dtype torch's loss
refuses. Models from small configs (no download).

Tolerance: LOGITS_TOL = 1e-2, test_huggingface.py's bound for a 2-layer
width-32 BERT (derived there at 10x transformers' default weight scale;
these models keep the default scale, where the errors are smaller); the
hidden states are LayerNorm outputs of about 1, whose entries carry the
same few units of 2^-16 per step, within the same bound.
"""

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

V, S = 40, 8
LOGITS_TOL = 1e-2  # module docstring
SMALL = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=64, max_position_embeddings=16)  # fmt: skip


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def onehot(ids):
    return cryptgpu.cryptensor(F.one_hot(ids, V).double(), src=1)


def bert(cls=T.BertForSequenceClassification, **kw):
    torch.manual_seed(0)
    cfg = T.BertConfig(**SMALL, num_labels=3, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, **kw)  # fmt: skip
    return cls(cfg).double().eval()


IDS = torch.randint(3, V, (2, S), generator=torch.Generator().manual_seed(1))
Y = torch.tensor([0, 2])


@pytest.fixture
def local():
    cryptgpu.init(seed=3)
    yield
    cryptgpu.uninit()


def assert_same(got, want):
    """``got`` (ours) has ``want``'s structure (a ModelOutput's keys, a
    tuple's length, nested tuples of hidden states), each tensor within
    LOGITS_TOL."""
    if isinstance(want, torch.Tensor):
        assert (pt(got) - want).abs().max() <= LOGITS_TOL
        return
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (list(got), list(want))
        got, want = tuple(got.values()), tuple(want.values())
    assert type(got) is tuple and len(got) == len(want), (type(got), len(got), len(want))
    for g, w in zip(got, want):
        assert_same(g, w)


def test_output_flags_turned_off_after_converting_are_followed(local):
    """A model converted with output_hidden_states and output_attentions
    (eager) set: turning them off on ``pm.config`` drops those fields, and
    return_dict=False gives transformers' tuple, as the torch model does
    with the same config (until 2026-12-06 every change was ignored); a
    model converted with return_dict=False returns a dict once it is set
    back to True (it is traced with the fields' names)."""
    m = bert(output_hidden_states=True, output_attentions=True, attn_implementation="eager")
    pm = cryptgpu.nn.from_pytorch(m).encrypt()
    for flag, value in (("output_hidden_states", False), ("output_attentions", False),
                        ("return_dict", False), ("output_hidden_states", True)):  # fmt: skip
        setattr(m.config, flag, value)
        setattr(pm.config, flag, value)
        with torch.no_grad():
            want = m(IDS, labels=Y)
        assert_same(pm(onehot(IDS), labels=Y), want)
    m = bert(return_dict=False)
    pm = cryptgpu.nn.from_pytorch(m).encrypt()
    with torch.no_grad():
        want = m(IDS)
    assert_same(pm(onehot(IDS)), want)  # (logits,)
    m.config.return_dict = pm.config.return_dict = True
    with torch.no_grad():
        want = m(IDS, labels=Y)
    assert_same(pm(onehot(IDS), labels=Y), want)


def test_output_flags_asking_for_what_was_not_traced_are_refused(local):
    """Flags turned on after converting ask for outputs the graph does not
    compute (hidden states, attentions), a changed problem_type for another
    loss, torchscript for another output form: a NotImplementedError at the
    next call naming the flag and saying to set it before converting (until
    2026-12-06 ignored: the old outputs, a cross-entropy loss for
    "regression"). problem_type matters only with labels; set to the
    problem traced, it is taken."""
    pm = cryptgpu.nn.from_pytorch(bert(attn_implementation="eager")).encrypt()
    cases = (("output_hidden_states", True), ("output_attentions", True), ("torchscript", True),
             ("problem_type", "regression"), ("problem_type", "multi_label_classification"))  # fmt: skip
    for flag, value in cases:
        before = getattr(pm.config, flag)
        setattr(pm.config, flag, value)
        with pytest.raises(NotImplementedError, match=rf"config\.{flag} = .*before converting"):
            pm(onehot(IDS), labels=Y)
        if flag == "problem_type":
            assert pm(onehot(IDS)).loss is None  # no labels: no loss to differ
        setattr(pm.config, flag, before)
    m = bert(attn_implementation="eager")
    m.config.problem_type = pm.config.problem_type = "single_label_classification"
    with torch.no_grad():
        want = m(IDS, labels=Y)
    assert_same(pm(onehot(IDS), labels=Y), want)
    assert usable()


def test_pretrained_accessors_answer_as_the_torch_model(local):
    """``base_model`` (the converted ``bert``: freezing it with
    requires_grad_(False) leaves as many trainable parameters as torch's
    model frozen so), ``get_input_embeddings()`` and
    ``get_output_embeddings()`` (the converted layers at the torch model's
    places, a masked LM's tied to the input embeddings, a classifier's
    None), ``num_parameters()`` (torch's counts, trainable only and without
    embeddings too), ``device`` and ``dtype`` (float64 plaintext copies
    before encrypt(); then a SharedTensor's: the session's device and the
    default float dtype, README)."""
    for cls in (T.BertForSequenceClassification, T.BertForMaskedLM):
        m = bert(cls)
        pm = cryptgpu.nn.from_pytorch(m)
        assert pm.base_model is pm.bert and pm.base_model_prefix == "bert"
        assert pm.get_input_embeddings() is pm.bert.embeddings.word_embeddings
        torch.testing.assert_close(
            pm.get_input_embeddings().weight, m.bert.embeddings.word_embeddings.weight
        )
        if cls is T.BertForMaskedLM:
            assert pm.get_output_embeddings() is pm.cls.predictions.decoder
            assert pm.get_output_embeddings().weight is pm.get_input_embeddings().weight
            # the decoder's bias, tied to cls.predictions.bias, under both names as
            # torch's: torch's state dict loads strictly (until 2026-12-07 the
            # second name was an unexpected key)
            assert list(pm.state_dict()) == list(m.state_dict())
            assert pm.cls.predictions.bias is pm.cls.predictions.decoder.bias
            pm.load_state_dict(m.state_dict())
        else:
            assert pm.get_output_embeddings() is None and m.get_output_embeddings() is None
        assert (pm.device, pm.dtype) == (torch.device("cpu"), torch.float64)
        pm.encrypt()
        assert (pm.device, pm.dtype) == (torch.device("cpu"), torch.get_default_dtype())
        for kw in ({}, {"only_trainable": True}, {"exclude_embeddings": True}):
            assert pm.num_parameters(**kw) == m.num_parameters(**kw), kw
        pm.base_model.requires_grad_(False)
        m.base_model.requires_grad_(False)
        for kw in ({}, {"only_trainable": True}):
            assert pm.num_parameters(**kw) == m.num_parameters(**kw), kw
        assert 0 < m.num_parameters(only_trainable=True) < m.num_parameters()


def test_gradient_checkpointing_is_accepted_and_changes_nothing(local):
    """gradient_checkpointing_enable() and _disable() are recorded
    (is_gradient_checkpointing, as torch's) and change nothing, as in torch
    (checkpointing recomputes activations to save memory: the same outputs
    and gradients); the logits and the classifier's gradient with it
    enabled within LOGITS_TOL of torch's. A class without checkpointing
    raises transformers' ValueError."""
    m = bert()
    pm = cryptgpu.nn.from_pytorch(m).encrypt()
    pm.gradient_checkpointing_enable()
    m.gradient_checkpointing_enable()
    assert pm.is_gradient_checkpointing and m.is_gradient_checkpointing
    pm.train()
    m.train()
    out = pm(onehot(IDS), labels=Y)
    out.loss.backward()
    want = m(IDS, labels=Y)
    want.loss.backward()
    assert (pt(out.logits) - want.logits.detach()).abs().max() <= LOGITS_TOL
    assert (pt(pm.classifier.weight.grad) - m.classifier.weight.grad).abs().max() <= LOGITS_TOL
    pm.gradient_checkpointing_disable()
    assert not pm.is_gradient_checkpointing

    class Plain(T.BertForSequenceClassification):
        supports_gradient_checkpointing = False

    torch.manual_seed(0)
    plain = Plain(bert().config).eval()
    with pytest.raises(ValueError, match="does not support gradient checkpointing") as theirs:
        plain.gradient_checkpointing_enable()
    with pytest.raises(ValueError) as ours:
        cryptgpu.nn.from_pytorch(plain).gradient_checkpointing_enable()
    assert str(ours.value) == str(theirs.value)


def test_refusals_say_why_the_model_does_not_convert(local):
    """DeBERTa-v2 (on transformers' tracer list, which fails on it) says the
    architecture does not trace under transformers' tracer, with its error
    as the cause; BART names encoder-decoder models that make their
    decoder's inputs from input_ids (an in-place write); T5's sequence
    classifier the pooling at end-of-sequence tokens found in the ids;
    Mixtral its data-dependent expert routing (until 2026-12-06:
    TorchScript's text, "unsupported function setitem", "unsupported
    function unique_consecutive", a range(x.size(1)) hint)."""
    torch.manual_seed(0)
    bart = dict(vocab_size=V, d_model=32, encoder_layers=1, decoder_layers=1,
                encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                decoder_ffn_dim=64, max_position_embeddings=16, num_labels=3)  # fmt: skip
    t5 = dict(vocab_size=V, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
              num_labels=3, decoder_start_token_id=0)  # fmt: skip
    cases = (
        (T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**SMALL, num_labels=3)),
         "DebertaV2ForSequenceClassification: this architecture does not trace under "
         "transformers' fx tracer"),
        (T.BartForSequenceClassification(T.BartConfig(**bart)),
         "BartForSequenceClassification: encoder-decoder models that make their decoder's "
         "inputs from input_ids"),
        (T.T5ForSequenceClassification(T.T5Config(**t5)), "pools each sequence at its "
         "end-of-sequence tokens"),
        (T.MixtralForCausalLM(T.MixtralConfig(**SMALL, num_key_value_heads=2,
                                              num_local_experts=4, num_experts_per_tok=2)),
         "MixtralForCausalLM: this architecture does not trace .* mixture-of-experts"),
    )  # fmt: skip
    for m, words in cases:
        with pytest.raises(NotImplementedError, match=words) as e:
            cryptgpu.nn.from_pytorch(m.eval())
        assert "range(" not in str(e.value) and len(str(e.value)) < 600
        if "does not trace" in words:
            assert e.value.__cause__ is not None  # transformers' tracer's own error
    assert usable()


def test_labels_of_a_dtype_torch_refuses_raise_torchs_error(local):
    """int32 class ids (torch's cross-entropy takes int64 or uint8), for a
    sequence classifier and a causal LM, and int64 0/1 targets of a
    multi-label classifier (torch's BCEWithLogits takes floats): torch's
    RuntimeError and message (until 2026-12-06 a loss came out); int64 and
    uint8 ids, and float multi-label targets, give torch's loss."""
    llama = T.LlamaForCausalLM(T.LlamaConfig(**SMALL, pad_token_id=0)).double().eval()
    multi = bert(problem_type="multi_label_classification")
    cases = (
        (bert(), Y.int(), (Y, Y.to(torch.uint8))),
        (llama, IDS.int(), (IDS,)),  # (uint8: torch's pad by -100 fails)
        (multi, torch.tensor([[1, 0, 1], [0, 1, 0]]), (torch.tensor([[1.0, 0, 1], [0, 1, 0]]),)),
    )
    for m, bad, good in cases:
        pm = cryptgpu.nn.from_pytorch(m).encrypt()
        with pytest.raises(RuntimeError) as theirs, torch.no_grad():
            m(IDS, labels=bad)
        with pytest.raises(RuntimeError) as ours:
            pm(onehot(IDS), labels=bad)
        assert str(ours.value) == str(theirs.value)
        for fine in good:
            with torch.no_grad():
                want = m(IDS, labels=fine).loss
            assert abs(pt(pm(onehot(IDS), labels=fine).loss) - want) <= LOGITS_TOL
    assert usable()


def test_labels_where_the_loss_did_not_trace_are_refused_clearly(local):
    """A model whose loss transformers' tracer cannot trace (a forward of
    the user's that branches on the labels' values) converts without
    labels (README); ``labels=`` is then a NotImplementedError saying so,
    with the tracer's error (until 2026-12-06 "unexpected keyword argument
    'labels'")."""

    class Branching(T.BertForSequenceClassification):
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None):
            out = super().forward(input_ids, attention_mask, token_type_ids)
            if labels is not None and bool((labels >= 0).all()):
                out.loss = F.cross_entropy(out.logits, labels)
            return out

    torch.manual_seed(0)
    m = Branching(bert().config).double().eval()
    pm = cryptgpu.nn.from_pytorch(m).encrypt()
    with torch.no_grad():
        want = m(IDS).logits
    assert (pt(pm(onehot(IDS)).logits) - want).abs().max() <= LOGITS_TOL
    with pytest.raises(NotImplementedError, match="takes no labels.*could not trace its loss"):
        pm(onehot(IDS), labels=Y)
    assert usable()
