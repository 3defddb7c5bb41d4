# samkit developer entry points. Every target sets up what it needs in .venv.
# TORCH_SPEC is the torch requirement installed first: the CPU wheel by default;
# GPU users pass their own, e.g. `make test TORCH_SPEC='torch==2.14.1'`.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint clean browser figures train-default train-text

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,scale]"
	touch $(STAMP)

venv: $(STAMP)

# The main job on the bundled default model: one click, one box, then segment everything
# (with the command line's default clean-up, --min-mask-region-area 100: islands and holes
# under 100 px are removed, so a stray pixel cannot make box NMS keep a mask twice).
demo: $(STAMP)
	$(BIN)/samkit segment examples/shapes.png --model samkit_default --point 100,90 \
		--multimask --out out/demo_mask.png --overlay out/demo_overlay.png
	$(BIN)/samkit segment examples/shapes.png --model samkit_default --box 170,40,290,150 \
		--out out/demo_box_mask.png --overlay out/demo_box_overlay.png
	$(BIN)/samkit amg examples/shapes.png --model samkit_default --out out/amg --overlays \
		--no-progress

# Retrain the bundled samkit_default from scratch: the stages of configs/default_model.json in
# order (hours on a 2-core CPU; run it again after a kill and finished stages are skipped, the
# stopped one resumes), then ship the last stage's model into the package and measure it on
# held-out scenes (docs/training.md).
train-default: $(STAMP)
	$(BIN)/python -m samkit.train --pipeline configs/default_model.json --runs runs
	$(BIN)/python tools/bundle_default.py --pipeline configs/default_model.json --runs runs
	$(BIN)/samkit eval --model samkit_default --precision fp32 --synthetic 3 --n 50 --clicks 1,2,3,5,9 --out docs/eval

# Train samkit_text's text grounder on samkit_default's proposals (configs/text_grounder.json;
# about 37 CPU-minutes on one core, resumed when run again), ship it into the package and
# measure text prompts on held-out scenes (docs/training.md, "Text prompts").
train-text: $(STAMP)
	$(BIN)/python -m samkit.train.grounder --config configs/text_grounder.json \
		--out runs/text_grounder --threads 1
	cp runs/text_grounder/grounder.safetensors src/samkit/weights/samkit_text_grounder.safetensors
	$(BIN)/samkit eval --text --model samkit_text --synthetic 3 --n 30 --out docs/eval_text

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The annotator's end-to-end test drives Debian's chromium through its chromedriver; install
# them where apt-get can (as root, or with sudo). Elsewhere that one test is skipped.
APT := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)
browser:
	@test -x /usr/bin/chromedriver || ! command -v apt-get >/dev/null || \
		$(APT) install -y -q chromium chromium-driver || \
		($(APT) update -q && $(APT) install -y -q chromium chromium-driver)
	@test -x /usr/bin/chromedriver || echo "note: no /usr/bin/chromedriver; the browser test will be skipped"

# Execute notebooks/*.ipynb and write their named figures to docs/img/ (tools/render_figures.py).
figures: $(STAMP)
	$(BIN)/python tools/render_figures.py

lint: $(STAMP)
	$(BIN)/ruff check src tests tools benchmarks
	$(BIN)/ruff format --check src tests tools benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(CLIP_VENV) out .pytest_cache .mypy_cache .ruff_cache

# The official segment_anything, in a throwaway venv, for goldens and benchmarks only.
PEER_VENV ?= .venv-peer
# mobilesam-mirror (MobileSAM's code; needs timm) and transformers: references for the model zoo.
PEER_SPEC ?= torch==2.14.1 torchvision==0.29.1 segment-anything==1.0 safetensors numpy pillow \
	pycocotools opencv-python-headless scikit-image \
	mobilesam-mirror==1.0.0 timm==1.0.31 transformers==5.24.0

.PHONY: peer-venv goldens zoo-goldens api-golden train-step-golden
peer-venv: $(PEER_VENV)/.installed
$(PEER_VENV)/.installed:
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install -q $(PEER_SPEC)
	touch $@

goldens: peer-venv
	$(PEER_VENV)/bin/python tools/make_goldens.py --out tests/goldens

zoo-goldens: peer-venv
	$(PEER_VENV)/bin/python tools/make_zoo_goldens.py --out tests/goldens

# The official package's public names and signatures (tests/test_api_surface.py) and a
# MedSAM-style training step's loss and gradients on its modules (tests/test_train_step_parity.py).
api-golden: peer-venv
	$(PEER_VENV)/bin/python tools/make_api_golden.py --out tests/goldens

train-step-golden: peer-venv
	$(PEER_VENV)/bin/python tools/make_train_step_golden.py

# Benchmarks: the peer venv with samkit (editable) and onnxruntime added, so that samkit and the
# official package run under the same torch in one process. `make bench` runs the commands of
# docs/benchmarks.md's latest speed tables (vit_b: about 25 minutes on 2 idle cores).
BENCH = OMP_NUM_THREADS=2 $(PEER_VENV)/bin/python benchmarks/bench_speed.py
SMALL_AMG = --model tests/goldens/amg.safetensors --parts amg --repeats 2
.PHONY: bench-env bench
bench-env: $(PEER_VENV)/.bench-installed
$(PEER_VENV)/.bench-installed: $(PEER_VENV)/.installed pyproject.toml
	$(PEER_VENV)/bin/pip install -q -e ".[onnx,openvino]"
	touch $@

bench: bench-env
	OMP_NUM_THREADS=2 $(PEER_VENV)/bin/python benchmarks/bench_runtimes.py --model vit_b --repeats 2 --no-amg
	OMP_NUM_THREADS=2 $(PEER_VENV)/bin/python benchmarks/bench_runtimes.py --model vit_b --repeats 1 --amg-only
	OMP_NUM_THREADS=2 $(PEER_VENV)/bin/python benchmarks/bench_runtimes.py --model vit_b --repeats 2 --no-amg \
		--emulate-avx2 --skip "samkit bf16,samkit int8,onnxruntime int8,openvino int8"
	OMP_NUM_THREADS=2 $(PEER_VENV)/bin/python benchmarks/bench_runtimes.py --model vit_t --repeats 2
	$(BENCH) --model vit_b --image astronaut --size 512 --parts amg --repeats 1
	$(BENCH) --model vit_b --size 1024 --parts set_image,predict --repeats 3
	$(BENCH) --model samkit_default --image astronaut --size 512 --repeats 3
	$(BENCH) $(SMALL_AMG) --image astronaut --size 512
	$(BENCH) $(SMALL_AMG) --image coffee --size 640 --amg-options \
		'{"pred_iou_thresh": 0.25, "stability_score_thresh": 0.6, "stability_score_offset": 0.25}'
	$(BENCH) --model samkit_tiny --image chelsea --size 512 --parts set_image,predict \
		--repeats 3 --precision bf16

# The CLIP text encoder's tests (tests/test_text_encoders.py -k clip, on a tiny open_clip model
# built in the test): open_clip needs torchvision, which does not install beside .venv's CPU
# torch, so they run in a venv of their own: PyPI's torch and torchvision (a CUDA build, which
# runs on the CPU; about 5 GB, a minute to install on a machine that holds them), open_clip,
# pytest and samkit (editable). CI runs it after `make test`.
CLIP_VENV ?= .venv-clip
CLIP_SPEC ?= torch==2.14.1 torchvision==0.29.1 open_clip_torch==3.3.0 pytest==9.2.0
.PHONY: test-clip
test-clip: $(CLIP_VENV)/.installed
	$(CLIP_VENV)/bin/python -m pytest tests/test_text_encoders.py -k clip
$(CLIP_VENV)/.installed: pyproject.toml
	test -x $(CLIP_VENV)/bin/python || $(PYTHON) -m venv $(CLIP_VENV)
	$(CLIP_VENV)/bin/pip install -q $(CLIP_SPEC)
	$(CLIP_VENV)/bin/pip install -q -e .
	touch $@
