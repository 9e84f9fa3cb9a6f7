from setuptools import find_packages, setup

setup(
    name='sd_plugin',
    version='0.2.0',
    description='Self-distillation for BasicSR: train an SRResNet teacher and its early-exit students in one run',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['sd_plugin', 'sd_plugin.*']) + ['sd_plugin.options'],
    package_dir={'sd_plugin.options': 'options'},  # the repository's options/ folder, installed as package data
    package_data={'sd_plugin.options': ['*.yml', '*/*.yml']},
    python_requires='>=3.8',
    # torch/torchvision and basicsr==1.4.2 are installed first, basicsr with --no-build-isolation (see README).
    install_requires=['basicsr==1.4.2', 'torch', 'torchvision', 'lmdb', 'pyyaml', 'tensorboard', 'opencv-python',
                      'tqdm', 'numpy', 'scikit-image', 'matplotlib', 'safetensors'],
    extras_require={'test': ['pytest', 'ruff'], 'onnx': ['onnx', 'onnxruntime'], 'spandrel': ['spandrel==0.4.2']},
    entry_points={
        'console_scripts': [
            'sd-train=sd_plugin.train:main',
            'sd-test=sd_plugin.test:main',
            'sd-export=sd_plugin.tools.export:main',
            'sd-basicsr-dropin=sd_plugin.tools.dropin:main',
            'sd-prepare=sd_plugin.tools.prepare:main',
            'sd-quickstart=sd_plugin.tools.quickstart:main',
            'sd-eval=sd_plugin.tools.eval:main',
            'sd-reproduce=sd_plugin.tools.reproduce:main',
            'sd-study=sd_plugin.tools.study:main',
            'sd-upscale=sd_plugin.tools.upscale:main',
            'sd-compare=sd_plugin.tools.compare:main',
            'sd-calibrate=sd_plugin.tools.calibrate:main',
        ]
    },
)
