"""JAX support that needs JAX: chains as pytrees, and telling traced values from concrete ones.

Nothing here imports JAX unless the caller already holds JAX arrays. A chain
class (``MPS``, ``MPO``) is registered as a pytree the first time one of its
objects is built from JAX arrays: the cores are the leaves; the
orthogonality centre, the report and (for an MPO) the matrix shape are
static. So chains pass through ``jax.jit``, ``jax.grad`` and ``jax.vmap`` as
arguments and results.
"""

from __future__ import annotations

from typing import Any, Callable

import array_api_compat

__all__ = ["register_if_jax", "is_tracer"]

_registered: set[type] = set()  # JAX's pytree registry is process-wide: each class once


def register_if_jax(cls: type, core: Any, flatten: Callable[[Any], tuple[Any, Any]],
                    unflatten: Callable[[Any, Any], Any]) -> None:
    """Register ``cls`` as a JAX pytree (``flatten``: object -> (leaves, static); ``unflatten``: (static,
    leaves) -> object) when ``core`` is a JAX array and ``cls`` is not registered yet."""
    if cls in _registered or not array_api_compat.is_jax_array(core):
        return
    from jax import tree_util

    tree_util.register_pytree_node(cls, flatten, unflatten)
    _registered.add(cls)


def is_tracer(x: Any) -> bool:
    """Whether ``x`` is an abstract value being traced by JAX (``jit``, ``grad``, ...), with no entries to read."""
    if not array_api_compat.is_jax_array(x):
        return False
    import jax

    return isinstance(x, jax.core.Tracer)
