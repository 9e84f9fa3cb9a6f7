"""L1DistillLoss: the distance between a student (exit) output and the teacher output."""
from basicsr.losses.basic_loss import L1Loss
from basicsr.utils.registry import LOSS_REGISTRY


@LOSS_REGISTRY.register()
class L1DistillLoss(L1Loss):
    """``loss_weight * L1(student, teacher)``, with the teacher detached by default so that the distillation term
    trains the student (its exit head and the shared trunk) but never pulls the teacher's head towards the student.

    Args:
        loss_weight (float): weight of the term. Default: 1.0 (the model's default config uses 0.1, as the paper).
        reduction (str): 'none' | 'mean' | 'sum', as ``basicsr.losses.L1Loss``. Default: 'mean'.
        detach_teacher (bool): stop gradients through the teacher output. Default: True.
    """

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
