"""What ``medzoo models`` prints: every registered model built once at a default size."""

from __future__ import annotations

from medzoo.zoo import registry


def describe_model(name: str, size: int = 64, channels: int = 1, num_classes: int = 2) -> dict:
    """Name, task, description, input/output shapes and parameter count of one zoo model."""
    entry = registry.get(name)
    model = registry.build(name, (size, size, channels), num_classes)
    return {
        "name": name,
        "task": entry.task,
        "description": entry.description,
        "inputs": {t.name.split(":")[0]: list(t.shape) for t in model.inputs},
        "outputs": {model.output_names[i] if hasattr(model, "output_names") else f"output_{i}":
                    list(t.shape) for i, t in enumerate(model.outputs)},
        "parameters": int(model.count_params()),
    }


def describe_all(size: int = 64) -> list[dict]:
    return [describe_model(name, size=size) for name in registry.names()]
