"""A class-conditional GAN that makes extra training images when data is scarce (the seed's GAN).

DCGAN-style generator and a projection discriminator (Miyato & Koyama 2018) with spectral
normalisation and an auxiliary classifier head (Odena et al. 2017), trained with the hinge loss. ``ConditionalGAN`` is a ``keras.Model`` with its own
``train_step``, so it trains with ``fit`` and the usual callbacks (checkpoints, backup, CSV log).
The generator alone is a plain functional model (``latent`` + ``label`` in, ``image`` out) that
saves, loads and exports like any zoo model.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from medzoo.zoo.registry import register

LATENT_DIM = 64


def _check_size(input_shape) -> int:
    size = input_shape[0]
    if len(input_shape) != 3 or input_shape[1] != size or size < 8 or 2 ** int(
            math.log2(size)) != size:
        raise ValueError(
            "Argument `input_shape` must be (S, S, C) with S a power of two >= 8. "
            f"Received: input_shape={tuple(input_shape)}")
    return size


def build_generator(input_shape, num_classes: int, *, latent_dim: int = LATENT_DIM,
                    base_width: int = 16) -> keras.Model:
    """(latent, label) → image in [0, 1]; upsamples from 4×4 to the image size."""
    size = _check_size(input_shape)
    steps = int(math.log2(size)) - 2
    latent = keras.Input((latent_dim,), name="latent")
    label = keras.Input((), dtype="int32", name="label")
    embedded = layers.Embedding(num_classes, latent_dim, name="class_embedding")(label)
    x = layers.Multiply()([latent, embedded])
    top = base_width * 2 ** min(steps, 3)
    x = layers.Dense(4 * 4 * top, use_bias=False)(layers.Concatenate()([x, latent]))
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.Reshape((4, 4, top))(x)
    for step in range(steps):
        width = max(base_width * 2 ** min(steps - step - 1, 3), 8)
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    image = layers.Conv2D(input_shape[-1], 3, padding="same", activation="sigmoid",
                          name="image", dtype="float32")(x)
    return keras.Model([latent, label], image, name="generator")


def build_discriminator(input_shape, num_classes: int, *, base_width: int = 16) -> keras.Model:
    """(image, label) → realness logit; class information enters by projection."""
    size = _check_size(input_shape)
    image = keras.Input(tuple(input_shape), name="image")
    label = keras.Input((), dtype="int32", name="label")
    x = image
    for step in range(int(math.log2(size)) - 2):
        width = base_width * 2 ** min(step, 3)
        x = layers.SpectralNormalization(layers.Conv2D(width, 4, strides=2, padding="same"))(x)
        x = layers.LeakyReLU(0.2)(x)
    features = layers.GlobalAveragePooling2D()(x)
    logit = layers.SpectralNormalization(layers.Dense(1))(features)
    projection = layers.Embedding(num_classes, features.shape[-1], name="class_projection")(label)
    projected = layers.Dot(axes=1)([features, projection])
    realness = layers.Add(name="realness")([logit, projected])
    class_logits = layers.Dense(num_classes, name="class_logits")(features)
    return keras.Model([image, label], [realness, class_logits], name="discriminator")


@keras.saving.register_keras_serializable(package="medzoo")
class ConditionalGAN(keras.Model):
    """Generator + discriminator trained with the hinge loss; ``fit`` on (image, label) batches."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model,
                 latent_dim: int = LATENT_DIM, class_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.class_weight = class_weight
        self.seed_generator = keras.random.SeedGenerator(0)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        super().compile(**kwargs)
        # Two time-scale update rule (Heusel et al. 2017): the discriminator learns faster.
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(4e-4, beta_1=0.0, beta_2=0.9)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9)

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    @staticmethod
    def _class_loss(labels, logits):
        return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                     from_logits=True))

    def _latent(self, batch):
        return keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)

    def train_step(self, data):
        import tensorflow as tf

        images, labels = data
        labels = ops.cast(labels, "int32")
        batch = ops.shape(images)[0]
        with tf.GradientTape() as tape:
            fake = self.generator([self._latent(batch), labels], training=True)
            real_logit, real_class = self.discriminator([images, labels], training=True)
            fake_logit, _ = self.discriminator([fake, labels], training=True)
            # Hinge loss, plus an auxiliary classifier learnt on real images only (AC-GAN):
            # small findings (a lesion) are easy for the projection term alone to ignore.
            d_loss = (ops.mean(ops.relu(1.0 - real_logit)) +
                      ops.mean(ops.relu(1.0 + fake_logit)) +
                      self.class_weight * self._class_loss(labels, real_class))
        weights = self.discriminator.trainable_weights
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, weights), weights))
        with tf.GradientTape() as tape:
            fake = self.generator([self._latent(batch), labels], training=True)
            fake_logit, fake_class = self.discriminator([fake, labels], training=True)
            g_loss = (-ops.mean(fake_logit) +
                      self.class_weight * self._class_loss(labels, fake_class))
        weights = self.generator.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, weights), weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "class_weight": self.class_weight,
                "generator": keras.saving.serialize_keras_object(self.generator),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        discriminator = keras.saving.deserialize_keras_object(config.pop("discriminator"))
        return cls(generator, discriminator, **config)


@register("gan", task="augmentation")
def build_gan(input_shape, num_classes: int, *, latent_dim: int = LATENT_DIM,
              base_width: int = 16) -> ConditionalGAN:
    """Class-conditional GAN augmenter: its generator makes extra training images (medzoo gan).

    Parameters
    ----------
    latent_dim : int
        Length of the generator's random input.
    base_width : int
        Filters of the generator's last and the discriminator's first convolution.
    """
    generator = build_generator(input_shape, num_classes, latent_dim=latent_dim,
                                base_width=base_width)
    discriminator = build_discriminator(input_shape, num_classes, base_width=base_width)
    gan = ConditionalGAN(generator, discriminator, latent_dim=latent_dim, name="conditional_gan")
    # Build by calling once (BackupAndRestore needs a built model before fit).
    gan([ops.zeros((1, latent_dim)), ops.zeros((1,), dtype="int32")])
    return gan
