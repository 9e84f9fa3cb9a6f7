from .distill_loss import L1DistillLoss
from .mse_distill_loss import MSEDistillLoss

__all__ = ['L1DistillLoss', 'MSEDistillLoss']
