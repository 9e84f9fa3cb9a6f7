"""SelfDistillSRModel: BasicSR's SRModel trained with self-distillation into the exits of an SRResNetMultiExit."""
import contextlib
import numbers
import random
from collections import OrderedDict
from os import path as osp

import torch
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from tqdm import tqdm

from sd_plugin.errors import ConfigError, NonFiniteLossError
from sd_plugin.imageio import write_image
from sd_plugin.text import did_you_mean

# train.self_distill: the plugin's own YAML section, with the paper's defaults.
SELF_DISTILL_DEFAULTS = {
    'student_pixel_weight': 0.9,  # weight of pixel_opt's loss between each exit's output and GT
    'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1},  # loss between each exit's output and the teacher
    'skip_nonfinite': 0,  # steps with a NaN/Inf loss to skip before stopping the run
    # Variants beyond the paper, all off by default (docs/variants.md):
    'distill_start_iter': 0,  # distillation (both terms) is off before this iteration ...
    'distill_ramp_iters': 0,  # ... then its weight ramps linearly from 0 to full over this many iterations
    'distill_gate': False,  # distil only the pixels where the teacher is closer to GT than the exit
    'trunk_grad_scale': 1.0,  # share of the deeper outputs' gradient that flows into the blocks before each exit
    'feature_distill_opt': None,  # loss between each exit head's last features and the teacher head's, e.g.
    #                               {type: L1DistillLoss, loss_weight: 0.1}; None: off
    # Family recipes (issue 23, docs/configuration.md "Training every exit as well as alone"):
    'exit_weights': None,  # one multiplier per exit (network_g.exits' order) on its losses; None: default_exit_weights
    'grad_equilibrium': False,  # every shared stage gets the mean of its outputs' gradients (replaces trunk_grad_scale)
    'sandwich': False,  # each step trains the teacher, the shallowest exit and one other exit drawn at random
    'exits_start_iter': 0,  # two-phase: before this iteration only the teacher (the backbone) trains
}


def default_exit_weights(exits):
    """``exit_weights`` when the YAML gives none (the family recipe, issue 23, measured with exits 4, 8 and 16 of 32
    blocks: docs/family/): of the summed loss weights (the teacher's pixel loss weighs 1), the shallowest exit gets
    half and the teacher a quarter, and the other exits share the last quarter equally: ``[2, 1/(n-1), ...]`` for n
    >= 2 exits ([2, 0.5, 0.5] for three). A single exit gets 1, the teacher's weight: the paper's recipe."""
    if len(exits) < 2:
        return [1.0] * len(exits)
    return [2.0] + [1.0 / (len(exits) - 1)] * (len(exits) - 1)


# train.channels_last / train.autocast / train.compile: speed options, all off by default (benchmarks/README.md).
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def speed_options(train_opt, device):
    """Validate ``train.channels_last``, ``train.autocast`` and ``train.compile`` for a run on ``device``.

    Returns:
        dict: ``channels_last`` (bool), ``autocast`` (None or the torch dtype), ``compile`` (bool).
    """
    opts = {}
    for key in ('channels_last', 'compile'):
        value = train_opt.get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f'train.{key}={value!r}: must be true or false')
        opts[key] = value
    autocast = train_opt.get('autocast')
    if autocast not in (None, *AUTOCAST_DTYPES):
        raise ConfigError(f'train.autocast={autocast!r}: must be one of null, bf16, fp16')
    if autocast == 'fp16' and torch.device(device).type != 'cuda':
        raise ConfigError(f"train.autocast='fp16': needs CUDA (this run is on {torch.device(device).type}); "
                          'use bf16 without CUDA')
    opts['autocast'] = AUTOCAST_DTYPES.get(autocast)
    return opts


def check_weight(key, value):
    """Raise ConfigError unless ``value`` is a finite number >= 0. ``key`` names it in the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < float('inf'):
        raise ConfigError(f'{key}={value!r}: must be a number >= 0')
    return float(value)


def self_distill_options(train_opt, exits):
    """Validate ``train.self_distill`` against the network's ``exits`` and fill in the defaults.

    Returns:
        dict: ``student_pixel_weight`` (float) and ``distill_opt`` (a loss option dict for ``build_loss``).
    """
    given = train_opt.get('self_distill')
    if given is not None and not exits:
        raise ConfigError('train.self_distill is set but network_g.exits is empty: there is no student to distill into')
    given = dict(given or {})
    for key in given:
        if key not in SELF_DISTILL_DEFAULTS:
            hint = did_you_mean(key, SELF_DISTILL_DEFAULTS) or f'; known keys: {", ".join(SELF_DISTILL_DEFAULTS)}'
            raise ConfigError(f'train.self_distill.{key}: unknown key{hint}')
    opts = {**SELF_DISTILL_DEFAULTS, **given}
    for key in ('skip_nonfinite', 'distill_start_iter', 'distill_ramp_iters', 'exits_start_iter'):
        if isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < 0:
            raise ConfigError(f'train.self_distill.{key}={opts[key]!r}: must be an integer >= 0')
    for key in ('distill_gate', 'grad_equilibrium', 'sandwich'):
        if not isinstance(opts[key], bool):
            raise ConfigError(f'train.self_distill.{key}={opts[key]!r}: must be true or false')
    scale = opts['trunk_grad_scale']
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 <= scale <= 1:
        raise ConfigError(f'train.self_distill.trunk_grad_scale={scale!r}: must be a number in [0, 1]')
    opts['trunk_grad_scale'] = float(scale)
    if opts['grad_equilibrium'] and scale != 1:
        raise ConfigError(f'train.self_distill.grad_equilibrium replaces trunk_grad_scale={scale!r}: set one of them')
    weights = opts['exit_weights']
    if weights is None:
        weights = default_exit_weights(exits)
    if not isinstance(weights, list) or len(weights) != len(exits):
        raise ConfigError(f'train.self_distill.exit_weights={weights!r}: must be a list of one weight per exit '
                          f'(network_g.exits={exits}), e.g. {[1.0] * len(exits)} (the paper\'s recipe), or null '
                          f'(the default: {default_exit_weights(exits)})')
    opts['exit_weights'] = {depth: check_weight(f'train.self_distill.exit_weights[{i}] (exit {depth})', w)
                            for i, (depth, w) in enumerate(zip(exits, weights))}
    opts['student_pixel_weight'] = check_weight('train.self_distill.student_pixel_weight', opts['student_pixel_weight'])
    opts['distill_opt'] = {**SELF_DISTILL_DEFAULTS['distill_opt'], **(opts['distill_opt'] or {})}
    check_weight('train.self_distill.distill_opt.loss_weight', opts['distill_opt']['loss_weight'])
    if opts['feature_distill_opt'] is not None:
        if not isinstance(opts['feature_distill_opt'], dict) or 'type' not in opts['feature_distill_opt']:
            raise ConfigError(f'train.self_distill.feature_distill_opt={opts["feature_distill_opt"]!r}: must be a '
                              'loss option dict with a type, e.g. {type: L1DistillLoss, loss_weight: 0.1}')
        check_weight('train.self_distill.feature_distill_opt.loss_weight',
                     opts['feature_distill_opt'].get('loss_weight', 1.0))
    return opts


def ramp(current_iter, start, length):
    """Weight in [0, 1] of a term that is off before iteration ``start`` and reaches full weight ``length``
    iterations later (at once when ``length`` is 0)."""
    if current_iter < start:
        return 0.0
    return 1.0 if length == 0 else min(1.0, (current_iter - start) / length)


def teacher_better_mask(student, teacher, gt):
    """(N, 1, H, W) float mask, 1 where the teacher's pixel is closer to GT than the student's (summed over
    channels), else 0. No gradient."""
    with torch.no_grad():
        return ((teacher - gt).abs().sum(1, keepdim=True) < (student - gt).abs().sum(1, keepdim=True)).float()


@MODEL_REGISTRY.register()
class SelfDistillSRModel(SRModel):
    """SRModel whose network (an ``SRResNetMultiExit``) also trains its exits, each as a student of the teacher.

    Loss per step, from one trunk pass (logged keys in brackets, one pair per exit k):
        pixel_opt(teacher, GT)                                           [l_pix]
      + sum over the step's exits k: w_k * (student_pixel_weight * pixel_opt(exit_k, GT)   [l_pix_exit{k}]
                                    + r * distill_opt(exit_k, teacher)                   [l_distill_exit{k}]
                                    + r * feature_distill_opt(head_k, head_teacher))     [l_feat_exit{k}] (when set)
    where w_k is ``exit_weights[k]`` (by default 2 on the shallowest exit of two or more and 1 / (n - 1) on the
    n - 1 others, else 1: ``default_exit_weights``), r ramps from 0 to 1 (``distill_start_iter``,
    ``distill_ramp_iters``; 1 by default) and, with ``distill_gate``, both sides of the distillation term are
    masked to the pixels where the teacher beats the exit. The step's exits are every exit, none before
    ``exits_start_iter``, and with ``sandwich`` the shallowest plus one other drawn at random (``step_depths``).
    Validation reports every ``val.metrics`` entry for the teacher (``psnr``) and for each exit (``psnr_exit8``).
    """

    def __init__(self, opt):
        super().__init__(opt)
        net = self.get_bare_model(self.net_g)
        if not hasattr(net, 'forward_exits'):
            raise ConfigError(f'network_g.type={opt["network_g"]["type"]!r}: SelfDistillSRModel needs '
                              'SRResNetMultiExit or MultiExitSR (use SRModel for a network without exits)')

    @property
    def exits(self):
        return self.get_bare_model(self.net_g).exits

    @property
    def teacher_depth(self):
        return self.get_bare_model(self.net_g).num_block

    def init_training_settings(self):
        train_opt = self.opt['train']
        if not train_opt.get('pixel_opt'):
            raise ConfigError('train.pixel_opt: missing; SelfDistillSRModel needs the teacher pixel loss')
        if train_opt.get('perceptual_opt'):
            raise ConfigError('train.perceptual_opt: not supported by SelfDistillSRModel')
        check_weight('train.pixel_opt.loss_weight', train_opt['pixel_opt'].get('loss_weight', 1.0))
        distill = self_distill_options(train_opt, self.exits)
        if self.opt.get('dist') and (distill['sandwich'] or distill['exits_start_iter']) and not self.opt.get(
                'find_unused_parameters'):
            raise ConfigError('train.self_distill.sandwich / exits_start_iter leave exit heads out of some steps; '
                              'under distributed training set find_unused_parameters: true')
        self.speed = speed_options(train_opt, self.device)
        if self.speed['channels_last']:  # before the optimizer and the EMA copy are made
            self.net_g.to(memory_format=torch.channels_last)
        super().init_training_settings()
        if self.speed['channels_last'] and hasattr(self, 'net_g_ema'):
            self.net_g_ema.to(memory_format=torch.channels_last)
        self.grad_scaler = torch.amp.GradScaler('cuda') if self.speed['autocast'] is torch.float16 else None
        # train.compile: the training forward only; self.net_g (saving, EMA, validation) stays the plain module, so
        # checkpoints keep their parameter names.
        self.compiled_net_g = torch.compile(self.net_g) if self.speed['compile'] else None
        student_pixel_opt = {**train_opt['pixel_opt'], 'loss_weight': distill['student_pixel_weight']}
        self.cri_pix_student = build_loss(student_pixel_opt).to(self.device)
        self.cri_distill = build_loss(distill['distill_opt']).to(self.device)
        feature_opt = distill['feature_distill_opt']
        self.cri_feature = None if feature_opt is None else build_loss(dict(feature_opt)).to(self.device)
        self.distill = distill
        self.nonfinite_skips_left = distill['skip_nonfinite']

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        sd = self.distill
        with self.autocast():  # train.autocast (off by default); the losses below are computed in fp32
            # {depth: SR image} and {depth: head features}, from ONE pass through the trunk
            outputs, features = self.net_g_train(self.lq, all_exits=True, depths=self.step_depths(current_iter),
                                                 features=True, trunk_grad_scale=sd['trunk_grad_scale'],
                                                 grad_equilibrium=sd['grad_equilibrium'])
        outputs = OrderedDict((depth, out.float()) for depth, out in outputs.items())  # no copy when already fp32
        self.output = teacher = outputs.pop(self.teacher_depth)
        r = ramp(current_iter, sd['distill_start_iter'], sd['distill_ramp_iters'])
        loss_dict = OrderedDict(l_pix=self.cri_pix(teacher, self.gt))
        for depth, student in outputs.items():
            w = sd['exit_weights'][depth]
            loss_dict[f'l_pix_exit{depth}'] = w * self.cri_pix_student(student, self.gt)
            target = teacher  # detached inside the distillation loss
            if sd['distill_gate']:  # only where the teacher beats the exit; no extra work on the hot path otherwise
                mask = teacher_better_mask(student, teacher, self.gt)
                student, target = student * mask, teacher * mask
            loss_dict[f'l_distill_exit{depth}'] = w * r * self.cri_distill(student, target)
            if self.cri_feature is not None:  # the teacher head's features are detached inside the loss
                loss_dict[f'l_feat_exit{depth}'] = w * r * self.cri_feature(features[depth].float(),
                                                                            features[self.teacher_depth].float())
        l_total = sum(loss_dict.values())
        if not self.all_ranks_finite(l_total):
            return self.skip_nonfinite_step(current_iter, loss_dict)
        self.backward_and_step(l_total)

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def step_depths(self, current_iter):
        """The outputs trained at ``current_iter``, increasing, the teacher last: every output; only the teacher
        before ``exits_start_iter``; with ``sandwich``, the shallowest exit and one other drawn at random (the same
        draw for the same seed and iteration, so a resumed run draws as the uninterrupted one would)."""
        sd = self.distill
        if current_iter < sd['exits_start_iter']:
            return [self.teacher_depth]
        exits = list(self.exits)
        if sd['sandwich'] and len(exits) > 2:
            draw = random.Random(f'{self.opt.get("manual_seed")}:{current_iter}')
            exits = [exits[0], draw.choice(exits[1:])]
        return [*exits, self.teacher_depth]

    @property
    def net_g_train(self):
        """The network the training step runs: ``torch.compile(net_g)`` with ``train.compile``, else ``net_g``."""
        compiled = getattr(self, 'compiled_net_g', None)
        return self.net_g if compiled is None else compiled

    def autocast(self):
        """``torch.autocast`` with ``train.autocast``'s dtype, or a no-op context when it is null."""
        dtype = getattr(self, 'speed', {}).get('autocast')
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def backward_and_step(self, loss):
        """``loss.backward()`` and an optimizer step; through the GradScaler with ``train.autocast: fp16``."""
        if getattr(self, 'grad_scaler', None) is None:
            loss.backward()
            self.optimizer_g.step()
        else:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer_g)
            self.grad_scaler.update()

    def feed_data(self, data):
        super().feed_data(data)
        if getattr(self, 'speed', {}).get('channels_last'):  # train.channels_last: inputs in NHWC memory order
            self.lq = self.lq.contiguous(memory_format=torch.channels_last)

    def all_ranks_finite(self, loss):
        """True when ``loss`` is finite on every rank (all ranks must agree to skip a step under DDP)."""
        finite = torch.isfinite(loss.detach()).float()
        if self.opt['dist']:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite)

    def skip_nonfinite_step(self, current_iter, loss_dict):
        """Skip this step (no update) while ``train.self_distill.skip_nonfinite`` allows, else stop the run: the
        last checkpoint saved stays the newest."""
        bad = next(((k, v.item()) for k, v in loss_dict.items() if not torch.isfinite(v)), ('sum of the losses', None))
        where = f'iteration {current_iter}: non-finite loss {bad[0]} = {bad[1]}'
        if self.nonfinite_skips_left <= 0:
            raise NonFiniteLossError(f'{where}; stopped, the last checkpoint is intact (lower the learning rate, '
                                     'or allow skipped steps with train.self_distill.skip_nonfinite: N)')
        self.nonfinite_skips_left -= 1
        get_root_logger().warning(f'{where}; step skipped ({self.nonfinite_skips_left} more skips allowed)')
        self.optimizer_g.zero_grad()
        self.log_dict = {k: v.item() for k, v in loss_dict.items()}

    def test(self):
        """Fill ``self.outputs`` ({depth: SR}, every exit and the teacher) and ``self.output`` (the teacher), with
        the EMA network when there is one."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.outputs = net(self.lq, all_exits=True)
        net.train(was_training)
        self.output = self.outputs[self.teacher_depth]

    def metric_name(self, metric, depth):
        """'psnr' for the teacher, 'psnr_exit8' for exit 8."""
        return metric if depth == self.teacher_depth else f'{metric}_exit{depth}'

    def _initialize_best_metric_results(self, dataset_name):
        super()._initialize_best_metric_results(dataset_name)
        record = self.best_metric_results[dataset_name]
        for metric, content in self.opt['val']['metrics'].items():
            better = content.get('better', 'higher')
            for depth in self.exits:
                record.setdefault(self.metric_name(metric, depth),
                                  dict(better=better, val=float('-inf' if better == 'higher' else 'inf'), iter=-1))

    def _image_path(self, img_name, dataset_name, current_iter, depth):
        """Where ``val.save_img`` writes an output: SRModel's path, with ``_exit{k}`` for exit k."""
        if self.opt['is_train']:
            path = osp.join(self.opt['path']['visualization'], img_name, f'{img_name}_{current_iter}')
        else:
            suffix = self.opt['val'].get('suffix') or self.opt['name']
            path = osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}')
        return path + ('' if depth == self.teacher_depth else f'_exit{depth}') + '.png'

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        if metrics:
            self._initialize_best_metric_results(dataset_name)
        depths = [self.teacher_depth, *self.exits]
        sums = {self.metric_name(m, d): 0.0 for d in depths for m in metrics}
        bar = tqdm(dataloader, unit='image', disable=not self.opt['val'].get('pbar', False))
        for index, val_data in enumerate(bar):
            img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            gt_img = tensor2img([self.gt.detach().cpu()]) if hasattr(self, 'gt') else None
            shown = {}  # depth -> SR image, for the TensorBoard grid of the first image
            for depth in depths:
                sr_img = tensor2img([self.outputs[depth].detach().cpu()])
                if save_img:
                    write_image(self._image_path(img_name, dataset_name, current_iter, depth), sr_img)  # atomic;
                    # a failed write ends the run in one line naming the file (BasicSR's imwrite names none)
                    shown[depth] = sr_img
                for name, metric_opt in metrics.items():
                    sums[self.metric_name(name, depth)] += calculate_metric({'img': sr_img, 'img2': gt_img}, metric_opt)
            if shown and index == 0 and tb_logger is not None and gt_img is not None:  # GT, each exit, the teacher
                from sd_plugin.compare import tensorboard_grid  # here: the model module stays light to import
                panels = [(f'exit {d}' if d in self.exits else 'teacher', shown[d]) for d in sorted(shown)]
                tb_logger.add_image(f'images/{dataset_name}', tensorboard_grid(gt_img, panels), current_iter,
                                    dataformats='HWC')
            del self.lq, self.output, self.outputs
            if hasattr(self, 'gt'):
                del self.gt

        if metrics:
            self.metric_results = {name: total / len(dataloader) for name, total in sums.items()}
            for name, value in self.metric_results.items():
                self._update_best_metric_result(dataset_name, name, value, current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
