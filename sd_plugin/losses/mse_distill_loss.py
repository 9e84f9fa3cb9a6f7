"""MSEDistillLoss: the MSE twin of L1DistillLoss, for the paper's L1-vs-MSE ablation."""
from basicsr.losses.basic_loss import MSELoss
from basicsr.utils.registry import LOSS_REGISTRY

from .distill_loss import TeacherTarget


@LOSS_REGISTRY.register()
class MSEDistillLoss(TeacherTarget, MSELoss):
    """``loss_weight * MSE(student, teacher)``; arguments as ``L1DistillLoss``."""
