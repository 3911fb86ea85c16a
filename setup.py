from setuptools import find_packages, setup

setup(
    name="segmenter",
    version="0.1.0",
    description="Segmenter (Strudel et al., ICCV 2021) as a PaddleSeg plugin, with a PyTorch twin and weight "
    "converters",
    packages=find_packages(include=["segmenter", "segmenter.*"]),
    package_data={"segmenter.demo": ["static/*"]},  # the demo page (tools/demo.py)
    python_requires=">=3.9",
    install_requires=[
        "paddlepaddle>=3.3,<3.4",
        "paddleseg==2.8.0",
        "numpy<2",
        "pandas>=2.2,<2.3",
        "visualdl==2.5.3",
        "safetensors>=0.4",
        "pyyaml>=6",
        "tqdm>=4.60",
        "requests>=2.28",
        "filelock>=3.12",
        "matplotlib>=3.7",
    ],
    extras_require={
        "torch": ["torch==2.14.1"],
        "test": ["torch==2.14.1", "pytest>=7"],
        # the demo page's browser test and screenshot (the server itself needs only the base install);
        # plus Debian's chromium and chromium-driver (tools/run_tests.sh installs them)
        "demo": ["selenium>=4.20"],
        # MMSeg / mmpretrain parity tests; then
        # `pip install --no-deps mmsegmentation==1.2.2 mmpretrain==1.2.0`
        "mmlab": [
            "mmengine==0.10.7",
            "mmcv-lite==2.1.0",
            "ftfy",
            "regex",
            "importlib_metadata",
            "modelindex",
            "mat4py",
            "einops",
        ],
    },
)
