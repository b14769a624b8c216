"""ReLU backward rules: gradient, deconvnet and guided back-propagation (paper §4).

Simonyan et al. (2013) show that a deconvnet reconstruction is the gradient of the
class score except at the rectifier. For a ReLU with input ``x`` and incoming
signal ``r`` from the layer above, the three rules pass back:

* ``"gradient"``:  ``r * (x > 0)``            (back-propagation, paper eq. in §4)
* ``"deconvnet"``: ``r * (r > 0)``            (Zeiler & Fergus' reconstruction)
* ``"guided"``:    ``r * (x > 0) * (r > 0)``  (Springenberg et al., 2014)

For ReLU6 the forward gate is ``0 < x < 6``.

The rule is read when a function is *traced*, from :func:`backprop_rule`, so any
model built with :func:`relu` / :func:`relu6` gets all three without hooks or
model surgery. Library entry points take ``rule=`` and set it inside the traced
function; when you ``jax.jit`` a function yourself, enter the context inside it
(or make the rule a static argument). The rule is also a JAX user context
(``jax.make_user_context``), part of the key of JAX's trace and compilation
caches: a function that JAX traced under one rule (a ``jax.jit`` inside the
model, or a body given to ``jax.lax.cond``, ``jax.lax.scan`` or ``jax.checkpoint``
that is the same Python function object on every call) is traced again under
another, so no cached trace keeps a stale rule.

Two consequences of the rules worth knowing:

* The deconvnet and guided rules are ``jax.custom_vjp`` functions: no forward mode
  through the rectifier itself (``jax.jvp`` or ``jax.jacfwd`` of a function of it
  raises), but a backward pass made with them can be differentiated again, in
  reverse or forward mode (``jax.grad`` of a gradient, ``jax.hessian``), and gives
  the derivative of the rule's piecewise formula. Their backward pass is not linear
  in the incoming signal (it rectifies it), so a pullback of a sum of seeds is not
  the sum of the pullbacks. The gradient rule is plain autodiff.
* The deconvnet rule never looks at the forward pass. In a network whose only
  input-dependent backward operations are the rectifiers (no max-pooling, whose
  switches are kept under every rule), such as EfficientNet-Lite0, the deconvnet
  signal of a class is therefore the same for every image.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

RULES = ("gradient", "deconvnet", "guided")

_CURRENT_RULE: contextvars.ContextVar[str] = contextvars.ContextVar(
    "saliency_jax_backprop_rule", default="gradient"
)
# The same rule as a key of JAX's caches, so that a trace JAX cached under one rule
# is not reused under another (a JAX without user contexts keeps its caches as they are).
_RULE_IN_CACHE_KEY = hasattr(jax, "make_user_context")
_RULE_CACHE_KEY = (jax.make_user_context(default_value="gradient") if _RULE_IN_CACHE_KEY
                   else lambda rule: contextlib.nullcontext())
# Rectifiers traced under the innermost :func:`backprop_rule`, counted so that a rule that
# reached no rectifier is reported instead of silently giving the gradient.
_RECTIFIERS_TRACED: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "saliency_jax_rectifiers_traced", default=None
)


def check_rule(rule: str, name: str = "rule", *, logits_fn=None) -> str:
    """Returns ``rule`` if it is one of :data:`RULES`, else raises ``ValueError``.

    With ``logits_fn``, also refuses a non-gradient rule for a model that is
    itself ``jax.jit``-wrapped where this JAX has no user contexts
    (``jax.make_user_context``): there the rule is no key of JAX's caches, and a
    trace cached under another rule would be reused. Where the rule is a key
    (any recent JAX), a jitted model is traced again under each rule and is
    accepted.
    """
    if not isinstance(rule, str) or rule not in RULES:  # the type first: `in` on an array compares elementwise
        raise ValueError(f"{name} must be one of {RULES}, got {rule!r}")
    if rule != "gradient" and logits_fn is not None and not _RULE_IN_CACHE_KEY and _is_jitted(logits_fn):
        raise ValueError(
            f"{name}={rule!r} needs an un-jitted logits_fn with this JAX ({jax.__version__}, no "
            "jax.make_user_context): the rule is not a key of its caches, so a jax.jit-wrapped model traced under "
            "another rule would keep that rule; pass the plain function and jit the call to the library instead"
        )
    return rule


def _is_jitted(fn) -> bool:
    import functools

    while isinstance(fn, functools.partial):
        fn = fn.func
    return hasattr(fn, "lower") and hasattr(fn, "trace")


@contextlib.contextmanager
def backprop_rule(rule: str) -> Iterator[str]:
    """Context manager selecting the ReLU backward rule for functions traced inside.

    Args:
      rule: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.

    Yields:
      The rule.
    """
    token = _CURRENT_RULE.set(check_rule(rule))
    try:
        with _RULE_CACHE_KEY(rule):
            yield rule
    finally:
        _CURRENT_RULE.reset(token)


class RuleNotAppliedWarning(UserWarning):
    """A non-gradient rule was asked for, but the traced model applied none of this module's rectifiers."""


@contextlib.contextmanager
def applied_rule(rule: str, traced: Callable[[], Any] | None = None) -> Iterator[str]:
    """:func:`backprop_rule`, warning when a non-gradient rule reached no rectifier.

    Library entry points trace the model inside this. If the trace applied no
    :func:`relu` / :func:`relu6`, ``"deconvnet"`` and ``"guided"`` give the plain
    gradient. That is right for a network without rectifiers (the rules differ only
    at the rectifiers, paper §4), but silently wrong for a model built on other
    rectifiers (``jax.nn.relu``), so it is reported with a
    :class:`RuleNotAppliedWarning`.

    The rectifiers are counted as they are traced. A model whose rectifiers sit
    inside a ``jax.jit`` that JAX had already traced under the rule (a jitted
    model, or a jitted function called from a lambda) traces none of them again;
    then ``traced``, if given, is called under the rule and its jaxpr searched for
    the rule's rectifiers, which carry the name scope :func:`rectifier_scope`.

    Args:
      rule: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.
      traced: returns the jaxpr (``jax.make_jaxpr``) of the function traced
        inside, for the case above.

    Yields:
      The rule.
    """
    counter = [0]
    token = _RECTIFIERS_TRACED.set(counter)
    try:
        with backprop_rule(rule):
            yield rule
    finally:
        _RECTIFIERS_TRACED.reset(token)
    if rule == "gradient" or counter[0] > 0:
        return
    if traced is not None:
        with backprop_rule(rule):
            if _applies(traced(), rectifier_scope(rule)):
                return
    warnings.warn(
        f"rule={rule!r} reached no rectifier: the traced model applies no saliency_jax.backprop_rules.relu or "
        "relu6, so the result is the plain gradient. Expected only for a network without rectifiers; otherwise "
        "build the model on these rectifiers",
        RuleNotAppliedWarning,
        stacklevel=4,
    )


def rectifier_scope(rule: str) -> str:
    """The name scope (``jax.named_scope``) of the rectifiers that apply a non-gradient ``rule``."""
    return f"saliency_jax_{check_rule(rule)}_rectifier"


def _applies(jaxpr, scope: str) -> bool:
    """Whether an equation of ``jaxpr`` or of a jaxpr inside it (jit, scan, cond, ...) is in ``scope``."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)  # a ClosedJaxpr's own
    for eqn in jaxpr.eqns:
        if scope in str(eqn.source_info.name_stack):
            return True
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(getattr(inner, "jaxpr", inner), "eqns") and _applies(inner, scope):
                    return True
    return False


def current_rule() -> str:
    """The rule in force for functions being traced now."""
    return _CURRENT_RULE.get()


def _make_rectifier(upper: float | None, rule: str):
    """Builds a ReLU (``upper=None``) or clipped ReLU with one backward rule."""

    # jax.nn's rectifiers have a zero derivative at the kinks, as the gate x > 0 says.
    forward_fn = jax.nn.relu if upper is None else jax.nn.relu6

    if rule == "gradient":
        return forward_fn  # plain autodiff is the gradient rule

    @jax.custom_vjp
    def rectifier(x):
        return forward_fn(x)

    def fwd(x):
        return forward_fn(x), x

    def bwd(x, r):
        zero = jnp.zeros_like(r)
        passes = r > 0
        if rule == "guided":
            gate = x > 0
            if upper is not None:
                gate = gate & (x < upper)
            passes = passes & gate
        return (jnp.where(passes, r, zero),)

    rectifier.defvjp(fwd, bwd)
    return rectifier


_RELU = {rule: _make_rectifier(None, rule) for rule in RULES}
_RELU6 = {rule: _make_rectifier(6.0, rule) for rule in RULES}


def _rectify(table, x: jax.Array) -> jax.Array:
    rule = current_rule()
    if rule == "gradient":
        return table[rule](x)
    with jax.named_scope(rectifier_scope(rule)):  # found in a cached trace by applied_rule
        return table[rule](x)


def _count_traced() -> None:
    counter = _RECTIFIERS_TRACED.get()
    if counter is not None:
        counter[0] += 1


def relu(x: jax.Array) -> jax.Array:
    """``max(x, 0)`` whose backward pass follows :func:`current_rule`.

    Args:
      x: any shape.

    Returns:
      Same shape as ``x``.
    """
    _count_traced()
    return _rectify(_RELU, x)


def relu6(x: jax.Array) -> jax.Array:
    """``min(max(x, 0), 6)`` whose backward pass follows :func:`current_rule`.

    Args:
      x: any shape.

    Returns:
      Same shape as ``x``.
    """
    _count_traced()
    return _rectify(_RELU6, x)
