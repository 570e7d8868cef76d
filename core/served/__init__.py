"""The models being served: ``ServedModel`` (one per route and snapshot), what a call says
(``ModelCall``), what a model is (``ModelFacts``), and what outlives snapshots (``ModelServices``)."""

from core.served.call import ModelCall
from core.served.model import Embedded, ModelFacts, ServedModel
from core.served.services import ModelServices

__all__ = ["Embedded", "ModelCall", "ModelFacts", "ModelServices", "ServedModel"]
