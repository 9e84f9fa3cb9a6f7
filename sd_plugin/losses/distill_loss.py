"""L1DistillLoss: the L1 distance between a student (exit) output and the teacher output."""
from basicsr.losses.basic_loss import L1Loss
from basicsr.utils.registry import LOSS_REGISTRY


class TeacherTarget:
    """Mixin for a BasicSR pixel loss ``Loss(pred, target)``: the target is the teacher output, detached unless
    ``detach_teacher`` is False, so the distillation term trains the student (its exit head and the shared trunk)
    but never pulls the teacher towards the student."""

    def __init__(self, loss_weight=1.0, reduction='mean', detach_teacher=True):
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        self.detach_teacher = detach_teacher

    def forward(self, student, teacher, weight=None, **kwargs):
        """
        Args:
            student (Tensor): (N, C, H, W) exit output.
            teacher (Tensor): (N, C, H, W) teacher output.
            weight (Tensor, optional): (N, C, H, W) element-wise weights.
        """
        return super().forward(student, teacher.detach() if self.detach_teacher else teacher, weight, **kwargs)


@LOSS_REGISTRY.register()
class L1DistillLoss(TeacherTarget, L1Loss):
    """``loss_weight * L1(student, teacher)``; follows ``basicsr.losses.L1Loss``.

    Args:
        loss_weight (float): weight of the term. Default: 1.0 (SelfDistillSRModel's default config uses 0.1).
        reduction (str): 'none' | 'mean' | 'sum'. Default: 'mean'.
        detach_teacher (bool): stop gradients through the teacher output. Default: True.
    """
