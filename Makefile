# Each target creates .venv when missing. torch is pinned to 2.13.0 here (the CPU wheel on this
# machine's disk); the package itself only asks for torch>=2.4.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: venv demo test test-fast test-other-cpu-path lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/unetkit demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The fast suite on the CPU precision path this machine does not take by itself: fp32 where the CPU
# has native bf16 (UNETKIT_CPU_BF16=0), emulated bf16 elsewhere (UNETKIT_CPU_BF16=1). Test files that
# take no CPU path of their own run once, in `make test`: those whose models all run at an explicit
# fp32 (file formats, Dask, bioimage.io, the napari viewer, spacing, anisotropic nets, the 3D example:
# 3D nets train in fp32 on CPU) and those that
# run no model at all (readers, metrics, losses at explicit dtypes, labels, transforms, reports), and
# the bad-input and summary tests.
FP32_ONLY := test_lazy_io test_dask_predict test_bioimageio test_napari_plugin test_itk_io \
	test_tiff_calibration test_instance_outputs test_spacing test_anisotropic test_orientation \
	test_quantize test_examples test_fold test_pyramid_outputs test_ignore_label
NO_MODEL := test_benchmarks_scoring test_discovery test_display test_fingerprint test_io test_json \
	test_labels test_losses_common test_losses_monai test_losses_overlap test_losses_pixel \
	test_losses_ssim test_metrics test_metrics_boundary test_metrics_connectomics \
	test_metrics_instances test_metrics_nsd test_metrics_objects test_metrics_roc test_naming \
	test_normalization test_objects test_packaging test_postprocess test_report test_sampling \
	test_splits test_transforms test_weightmap
# bad-input messages and model summaries: what they check happens before any precision applies;
# the README tour and the demo check that their commands run (the trainer's and predictor's
# precision paths are test_training's and test_predict's, which run on both paths; the demo on
# emulated bf16 took 68 of this pass's 347 s on an AVX2 CPU)
ERRORS_ONLY := test_bad_inputs_train test_bad_inputs_predict test_summary test_readme_tour test_demo
test-other-cpu-path: $(STAMP)
	UNETKIT_CPU_BF16=$$($(BIN)/python -c "from unetkit.runtime import native_cpu_bf16; print(0 if native_cpu_bf16() else 1)") \
		$(BIN)/python -m pytest -q -m "not slow" $(foreach t,$(FP32_ONLY) $(NO_MODEL) $(ERRORS_ONLY),--ignore=tests/$(t).py)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info

# Every benchmark in one run (~75 min on 2 cores), comparison packages (the bench extra) installed
# for this target only; rewrites BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	$(BIN)/python benchmarks/run_all.py
