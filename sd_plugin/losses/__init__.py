from .distill_loss import L1DistillLoss

__all__ = ['L1DistillLoss']
