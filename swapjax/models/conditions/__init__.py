"""The swap model's optional conditions behind one interface (see `base.py`) and their registry.

Importing this package registers the built-ins; their import order below is their build order (it fixes
parameter initialisation). A new condition lives in its own file, registers itself with
`@register_condition("name")`, and is turned on by naming it in `SwapConfig.conditions` with its keyword
arguments (its `Settings`).
"""

from swapjax.models.conditions.base import BATCH_KEYS, Condition, VideoStream
from swapjax.models.conditions.registry import (DataNeeds, build_conditions, condition_classes, condition_inputs,
                                                condition_names, data_needs, needed_batch_keys, not_configured,
                                                register_condition, registered_conditions, settings,
                                                settings_type)
from swapjax.models.conditions.pose import PoseCondition, PoseInputs  # registers "pose"
from swapjax.models.conditions.identity import IdentityCondition, IdentityInputs  # registers "identity"
from swapjax.models.conditions.points import PointCondition, PointInputs  # registers "points"

__all__ = ["BATCH_KEYS", "Condition", "DataNeeds", "condition_classes", "condition_inputs", "data_needs",
           "needed_batch_keys", "settings", "settings_type", "IdentityCondition", "IdentityInputs", "PointCondition", "PointInputs", "PoseCondition",
           "PoseInputs", "VideoStream", "build_conditions", "condition_names", "not_configured", "register_condition",
           "registered_conditions"]
