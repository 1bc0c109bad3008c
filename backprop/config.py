"""Training configuration and presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

PRESETS: dict[str, dict] = {
    # The original notebook's run, with correct gradients.
    "notebook": dict(hidden=[64, 64, 64, 64, 64], activation="identity", init="xavier_normal",
                     batch_size=32, lr=0.001, momentum=0.0, epochs=20, optimizer="sgd"),
    # A ReLU network that beats it (>= 0.88 test accuracy on Fashion-MNIST).
    "default": dict(hidden=[256, 128], activation="relu", init="he_normal",
                    batch_size=64, lr=0.05, momentum=0.9, epochs=15, optimizer="sgd",
                    lr_schedule="cosine"),
}


@dataclass
class TrainConfig:
    """Everything that decides a run's numbers (and so is stored in every checkpoint)."""

    dataset: str = "mnist"
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    activation: str = "relu"
    init: str = "he_normal"
    dtype: str = "float32"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_schedule: str = "constant"
    step_size: int = 5
    gamma: float = 0.1
    limit: int | None = None
    preset: str = "default"

    @property
    def sizes(self) -> list[int]:
        return [784, *self.hidden, 10]

    def to_json(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        out["sizes"] = self.sizes
        return out

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return cls(**kwargs)

    def architecture(self) -> dict:
        return {"sizes": self.sizes, "activation": self.activation, "init": self.init,
                "dtype": self.dtype}
