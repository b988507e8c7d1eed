"""What ``medzoo models`` prints: every registered model built once at a default size.

FLOPs are counted from the TensorFlow graph of one forward pass on one image (batch 1): for every
convolution (incl. transposed and depthwise), matrix product (dense layers, attention) and einsum,
2 × its multiply–accumulates. Element-wise work (bias, activations, normalisation, softmax) is not
counted — the usual convention for reported model FLOPs. Reading the traced graph, rather than
Keras layers, also counts custom layers (attention) and nested models (backbones) correctly.
"""

from __future__ import annotations

import math

from medzoo.zoo import registry

_CONVS = ("Conv2D", "Conv3D")
_TRANSPOSED = ("Conv2DBackpropInput", "Conv3DBackpropInputV2")
_MATMULS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


def _dims(tensor) -> list[int] | None:
    shape = tensor.shape
    if shape.rank is None or any(d is None for d in shape.as_list()):
        return None
    return shape.as_list()


def _einsum_macs(op) -> int:
    equation = op.get_attr("equation").decode()
    inputs = equation.split("->")[0].split(",")
    if "..." in equation or len(inputs) != len(op.inputs):
        raise ValueError(f"Cannot count FLOPs of einsum {equation!r} (ellipsis). "
                         "Expected explicit subscripts.")
    sizes = {}
    for subscripts, tensor in zip(inputs, op.inputs):
        sizes.update(zip(subscripts, _dims(tensor)))
    return math.prod(sizes.values())


def _op_macs(op) -> int:
    """Multiply–accumulates of one graph op (0 for ops that are not counted)."""
    kind = op.type
    if kind in _CONVS or kind == "DepthwiseConv2dNative":
        out, kernel = _dims(op.outputs[0]), _dims(op.inputs[1])
        per_output = math.prod(kernel[:-2]) * (1 if kind == "DepthwiseConv2dNative" else kernel[-2])
        return math.prod(out) * per_output
    if kind in _TRANSPOSED:
        kernel, grad = _dims(op.inputs[1]), _dims(op.inputs[2])  # grad = the layer's input
        return math.prod(grad) * math.prod(kernel[:-1])
    if kind in _MATMULS:
        a = _dims(op.inputs[0])
        transposed = op.get_attr("transpose_a" if kind == "MatMul" else "adj_x")
        return math.prod(_dims(op.outputs[0])) * (a[-2] if transposed else a[-1])
    if kind == "Einsum":
        return _einsum_macs(op)
    return 0


def count_flops(model) -> int:
    """FLOPs of ``model`` on one input (batch 1) at its built input shape; see the module doc.

    Raises ``ValueError`` when an input has an unknown (None) non-batch dimension.
    """
    import tensorflow as tf

    specs = []
    for tensor in model.inputs:
        if any(d is None for d in tensor.shape[1:]):
            raise ValueError("count_flops needs fixed input sizes. "
                             f"Received: input shape {tuple(tensor.shape)}")
        specs.append(tf.TensorSpec((1, *tensor.shape[1:]), tensor.dtype))

    @tf.function
    def forward(*inputs):
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    graph = forward.get_concrete_function(*specs).graph
    return 2 * sum(_op_macs(op) for op in graph.get_operations())


def describe_model(name: str, size: int = 64, channels: int | None = None,
                   num_classes: int = 2) -> dict:
    """Name, task, description, input/output shapes, parameters and FLOPs of one zoo model.

    ``channels`` defaults to the model's registered ``default_channels`` (1, or one per modality
    for fusion models); FLOPs are per image at ``size`` × ``size``. For the GAN augmenter the
    shapes and FLOPs are its generator's (what is sampled and exported), the parameters those of
    generator and discriminator together (what is trained).
    """
    entry = registry.get(name)
    channels = entry.default_channels if channels is None else channels
    built = registry.build(name, (size, size, channels), num_classes)
    model = built.generator if entry.task == "augmentation" else built
    return {
        "name": name,
        "task": entry.task,
        "description": entry.description,
        "inputs": {t.name.split(":")[0]: list(t.shape) for t in model.inputs},
        "outputs": {model.output_names[i] if hasattr(model, "output_names") else f"output_{i}":
                    list(t.shape) for i, t in enumerate(model.outputs)},
        "parameters": int(built.count_params()),
        "flops": count_flops(model),
    }


def describe_all(size: int = 64) -> list[dict]:
    return [describe_model(name, size=size) for name in registry.names()]
