"""The data and packages ``benchmarks/gpu_check.sh`` takes to the GPU machine, in the git-ignored ``.device_data/``.

``pack`` (here, on CPU; ``gpu_check.sh --prepare``) writes, from ``../shared/data``:

  .device_data/291_webp/HR_sub/*.webp, LR_bicubic/X4_sub/*.webp
        the 291 set (T91 + BSD200 HR) as ``sd-prepare folder --subimages --scale 4`` writes it (480 px crops every
        240 px; every 291 image is at most 481x321, so each gives one crop: the image cropped to a multiple of 4),
        re-encoded as lossless WebP (checked pixel for pixel), 39 MB instead of 76 MB of PNG
  .device_data/bench/Set5, Set14: GTmod4/ + LRbicx4/ PNGs by ``sd-prepare benchmark --scale 4`` (validation)
  .device_data/site/basicsr: the installed basicsr 1.4.2 package (pure Python; the GPU image lacks it)
  .device_data/MANIFEST.json: what is there, and its size (kept under 60 MB: the working tree that travels is
        capped at 64 MiB)

``unpack`` (on the GPU machine, or in a dry run) decodes the WebPs back into the PNG folders the training YAMLs
read, ``.device_data/work/291/HR_sub`` and ``.device_data/work/291/LR_bicubic/X4_sub``. ``clean-work`` removes
``.device_data/work`` (so that it never travels).
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from os import path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
DEVICE_DATA = osp.join(ROOT, '.device_data')
LIMIT_BYTES = 60 * 2**20
WEBP_LOSSLESS = 101  # cv2.IMWRITE_WEBP_QUALITY above 100: lossless


def encode(job):
    import cv2
    import numpy as np
    src, dst = job
    img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    ok, data = cv2.imencode('.webp', img, [cv2.IMWRITE_WEBP_QUALITY, WEBP_LOSSLESS])
    back = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else None
    if back is None or back.shape != img.shape or not np.array_equal(back, img):
        raise RuntimeError(f'{src}: lossless WebP round trip failed')
    with open(dst, 'wb') as f:
        f.write(data.tobytes())
    return len(data)


def decode(job):
    import cv2
    src, dst = job
    img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    if img is None or not cv2.imwrite(dst, img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise RuntimeError(f'{src}: cannot decode to {dst}')


def folder_bytes(folder):
    return sum(osp.getsize(osp.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def convert(src_root, dst_root, ext_from, ext_to, worker, processes):
    """Convert every ``*.ext_from`` under ``src_root`` into the same relative path under ``dst_root``."""
    jobs = []
    for d, _, files in os.walk(src_root):
        for f in sorted(files):
            if f.endswith(ext_from):
                rel = osp.relpath(osp.join(d, f), src_root)
                jobs.append((osp.join(d, f), osp.join(dst_root, rel[:-len(ext_from)] + ext_to)))
    for folder in {osp.dirname(dst) for _, dst in jobs}:
        os.makedirs(folder, exist_ok=True)
    with Pool(processes) as pool:
        pool.map(worker, jobs, chunksize=4)
    return len(jobs)


def quiet_prepare(argv):
    """``sd-prepare`` with its progress bars swallowed; re-raises its errors."""
    from sd_plugin.tools.prepare import main
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(argv)


def pack(shared, processes):
    start = time.time()
    t91, bsd = osp.join(shared, 'T91', 'HR'), osp.join(shared, 'BSD200', 'HR')
    for folder in (t91, bsd, osp.join(shared, 'Set5', 'HR'), osp.join(shared, 'Set14', 'HR')):
        if not osp.isdir(folder):
            raise SystemExit(f'{folder}: missing (--shared points at the shared data folder)')
    os.makedirs(DEVICE_DATA, exist_ok=True)
    for sub in ('291_webp', 'bench', 'site', 'work', 'MANIFEST.json'):
        target = osp.join(DEVICE_DATA, sub)
        if osp.isdir(target):
            shutil.rmtree(target)
        elif osp.exists(target):
            os.remove(target)
    with tempfile.TemporaryDirectory(prefix='device_data_') as tmp:
        hr = osp.join(tmp, 'hr291')
        os.makedirs(hr)
        for folder in (t91, bsd):  # one folder of links: sd-prepare folder takes one --hr
            for name in os.listdir(folder):
                os.symlink(osp.abspath(osp.join(folder, name)), osp.join(hr, name))
        print(f'sd-prepare folder --hr <T91 + BSD200> --name 291 --scale 4 --subimages ({len(os.listdir(hr))} '
              'images)', flush=True)
        quiet_prepare(['folder', '--hr', hr, '--name', '291', '--out', osp.join(tmp, '291'), '--scale', '4',
                       '--subimages'])
        print('lossless WebP re-encoding (checked)', flush=True)
        count = convert(osp.join(tmp, '291'), osp.join(DEVICE_DATA, '291_webp'), '.png', '.webp', encode, processes)
    for name in ('Set5', 'Set14'):
        print(f'sd-prepare benchmark --name {name} --scale 4', flush=True)
        quiet_prepare(['benchmark', '--hr', osp.join(shared, name, 'HR'), '--name', name, '--out',
                       osp.join(DEVICE_DATA, 'bench', name), '--scale', '4'])
    import basicsr
    shutil.copytree(osp.dirname(basicsr.__file__), osp.join(DEVICE_DATA, 'site', 'basicsr'),
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '*.so'))
    sizes = {sub: folder_bytes(osp.join(DEVICE_DATA, sub)) for sub in ('291_webp', 'bench', 'site')}
    total = sum(sizes.values())
    manifest = {'made': time.strftime('%Y-%m-%d %H:%M:%S'), 'shared': osp.abspath(shared), 'train_files': count,
                'basicsr': basicsr.__version__, 'bytes': sizes, 'total_bytes': total}
    with open(osp.join(DEVICE_DATA, 'MANIFEST.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    print(f'wrote {DEVICE_DATA}: {count} training files; ' +
          ', '.join(f'{k} {v / 2**20:.1f} MiB' for k, v in sizes.items()) +
          f'; total {total / 2**20:.1f} MiB in {time.time() - start:.0f} s')
    if total > LIMIT_BYTES:
        raise SystemExit(f'{DEVICE_DATA}: {total / 2**20:.1f} MiB, over the {LIMIT_BYTES / 2**20:.0f} MiB limit')


def unpack(processes):
    src = osp.join(DEVICE_DATA, '291_webp')
    if not osp.isfile(osp.join(DEVICE_DATA, 'MANIFEST.json')) or not osp.isdir(src):
        raise SystemExit(f'{DEVICE_DATA}: not prepared; run bash benchmarks/gpu_check.sh --prepare first')
    with open(osp.join(DEVICE_DATA, 'MANIFEST.json')) as f:
        manifest = json.load(f)
    dst = osp.join(DEVICE_DATA, 'work', '291')
    if osp.isdir(dst):
        shutil.rmtree(dst)
    start = time.time()
    count = convert(src, dst, '.webp', '.png', decode, processes)
    if count != manifest['train_files']:
        raise SystemExit(f'{src}: {count} files, the manifest says {manifest["train_files"]}')
    print(f'unpacked {count} files into {dst} in {time.time() - start:.1f} s')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('command', choices=['pack', 'unpack', 'clean-work'])
    parser.add_argument('--shared', default=osp.join(ROOT, '..', 'shared', 'data'),
                        help='the shared data folder (default: ../shared/data)')
    parser.add_argument('--processes', type=int, default=os.cpu_count(), help='worker processes')
    args = parser.parse_args(argv)
    if args.command == 'pack':
        pack(args.shared, args.processes)
    elif args.command == 'unpack':
        unpack(args.processes)
    else:
        shutil.rmtree(osp.join(DEVICE_DATA, 'work'), ignore_errors=True)


if __name__ == '__main__':
    main()
