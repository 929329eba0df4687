"""The demo report card (``ltx.cli.report_card``) on a demo trained for two steps, and its pieces: a
perfect model's videos score full marks through the report's own scoring, verdicts, the validation loss
from CSV metrics, the contact sheet and errors for missing inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import compose_config
from PIL import Image

from data_pipeline.demo import SceneSpec, render_scene
from ltx.cli import report_card
from ltx.cli.train import run_training
from ltx.evaluation import held_out_prompts
from ltx.evaluation.contact_sheet import SheetRow, render_contact_sheet, row_height
from ltx.evaluation.report_card import Metric, adherence_metrics, targets_met
from ltx.training.adherence import score_videos

TARGETED = ["vae/psnr_t0", "vae/ssim_t0", "vae/psnr_t0.05", "vae/ssim_t0.05", "t2v/colour", "t2v/shape", "t2v/motion",
            "i2v/first_frame_psnr", "i2v/colour", "i2v/shape", "i2v/motion"]
INFORMATIONAL = ["dit/val_loss", "t2v/all", "t2v/found", "i2v/all", "i2v/found", "vae_read/colour", "vae_read/shape",
                 "vae_read/motion", "vae_read/all", "vae_read/found"]


@pytest.fixture(scope="module")
def trained_demo(demo_dir, tmp_path_factory):
    """The session's demo data with a VAE and a DiT trained two steps each (smoke runs on the world's
    training clips at 9x64x64), their checkpoints where `make demo` leaves them."""
    target = tmp_path_factory.mktemp("report_card") / "demo"
    shutil.copytree(demo_dir, target)
    common = ["experiment=smoke", f"demo_dir={target}", f"data.train_shards={target / 'world' / 'shards'}",
              "data.buckets=[[9,64,64]]"]
    for stage, extra in (("vae", []), ("dit", ["dit_training.samples=null"])):
        trainer = run_training(compose_config(f"train_{stage}", [*common, f"run_dir={target / f'{stage}_run'}", *extra]))
        trainer.save_checkpoint(target / f"{stage}_run" / "checkpoints" / "last.ckpt")
    return target


def test_report_card_of_a_two_step_demo(trained_demo, tmp_path, capsys):
    output = tmp_path / "card"
    report = report_card.main([str(trained_demo), "--frames", "17", "--height", "64", "--width", "64",
                               "--output", str(output)])
    printed = capsys.readouterr().out
    written = json.loads((output / "report_card.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert set(written["metrics"]) == set(TARGETED + INFORMATIONAL)
    assert set(written["targets_met"]) == set(TARGETED) and all(isinstance(v, bool) for v in written["targets_met"].values())
    assert written["all_targets_met"] is False  # two steps learn nothing
    for name, metric in written["metrics"].items():
        assert metric["value"] is not None and np.isfinite(metric["value"]), name
        assert (metric["target"] is None) == (name in INFORMATIONAL)
        assert metric["verdict"] in (("INFO",) if name in INFORMATIONAL else ("PASS", "FAIL"))
        if metric["unit"] == "fraction":
            assert 0.0 <= metric["value"] <= 1.0, name
        assert metric["description"] in printed and metric["verdict"] in printed
    assert written["dit_val_loss"]["value"] == written["metrics"]["dit/val_loss"]["value"]
    assert written["dit_decodes_with_this_vae"] is True
    # 24 held-out prompts, the 2 held-out world clips of the test world for image-to-video, 5 clips in val/
    assert len(written["t2v_samples"]) == 24 and len(written["i2v_samples"]) == 2 and len(written["vae_clips"]) == 5
    assert [sample["prompt"] for sample in written["t2v_samples"]] == [p.caption for p in held_out_prompts(24)]
    assert written["settings"]["frames"] == 17 and written["settings"]["height"] == 64
    # every clip coded at the scale the demo trains at: height 64, the width keeping its aspect (a multiple of 32)
    assert written["settings"]["vae_height"] == 64
    shapes = {row["key"]: row["shape"] for row in written["vae_clips"]}
    assert all(shape[1] == 64 for shape in shapes.values())
    assert shapes["cyan_square_wide"][1:] == [64, 128] and shapes["yellow_circle_gradient"][1:] == [64, 96]
    sheet = Image.open(output / "contact_sheet.png")
    assert written["contact_sheet"]["rows"] == 24 + 2 + 3  # samples, then 3 VAE reconstructions
    assert sheet.height == (24 + 2 + 3) * row_height(64)
    markdown = (output / "report_card.md").read_text()
    assert "contact_sheet.png" in markdown and "FAIL" in markdown and held_out_prompts(1)[0].caption in markdown
    assert written["seconds"] < 120  # sampling is batched: a few seconds here
    assert not (trained_demo / "report_card.json").exists()  # --output took the files


def test_sizes_default_to_the_world_clips(trained_demo):
    args = report_card.parse_args([str(trained_demo)])
    world = json.loads((trained_demo / "world.json").read_text())["settings"]
    settings = report_card.sample_settings(args, trained_demo)
    assert (settings.frames, settings.height, settings.width) == (world["frames"], world["height"], world["width"])
    assert (settings.num_steps, settings.guidance_scale) == (10, 3.0)


def world_video(prompt, size: int = 64) -> torch.Tensor:
    """A held-out prompt rendered by the demo world: what a perfect model would sample, `(3, 17, H, W)`."""
    scene = SceneSpec(prompt.shape, prompt.colour, prompt.motion, prompt.background, prompt.background_colour, 17)
    frames = np.stack(list(render_scene(scene, size, size)))  # (17, H, W, 3)
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def test_vae_clips_are_coded_at_the_training_scale_or_their_own_size():
    assert report_card.training_scale_size(192, 256, 64) == (64, 96)  # 85.3 wide -> the nearest multiple of 32
    assert report_card.training_scale_size(160, 320, 64) == (64, 128)
    assert report_card.training_scale_size(64, 64, 64) == (64, 64)
    assert report_card.training_scale_size(400, 20, 64) == (64, 32)  # at least 32 wide


def test_vae_rows_at_their_own_size_with_vae_height_0(demo_dir):
    from ltx.models.vae import VideoAutoencoder, vae_config

    vae = VideoAutoencoder(vae_config("tiny")).eval()
    clips = [clip for clip in report_card.read_clips(demo_dir / "val") if clip.key == "yellow_circle_gradient"]
    own, _ = report_card.vae_reconstructions(vae, clips, 9, 0.05, 2, 0, 0, height=None)
    scaled, [(_, _, reconstruction)] = report_card.vae_reconstructions(vae, clips, 9, 0.05, 2, 0, 1, height=64)
    assert not reconstruction.requires_grad  # measured without autograd
    assert own[0]["shape"] == [9, 192, 256] and scaled[0]["shape"] == [9, 64, 96]
    assert report_card.parse_args([str(demo_dir), "--vae-height", "0"]).vae_height == 0


def test_a_perfect_model_meets_every_adherence_target():
    prompts = held_out_prompts(24)
    videos = torch.stack([world_video(prompt) for prompt in prompts])  # (24, 3, 17, 64, 64)
    result = score_videos(videos, prompts)
    assert result.scores == {"colour": 1.0, "shape": 1.0, "motion": 1.0, "all": 1.0, "found": 1.0}
    metrics = adherence_metrics("t2v", "Text-to-video", result.scores, len(prompts))
    assert targets_met(metrics) == {"t2v/colour": True, "t2v/shape": True, "t2v/motion": True}
    psnr = report_card.first_frame_psnr(videos[:4], videos[:4, :, 0] + 0.01)
    assert min(psnr) > 40  # a video that keeps its conditioning image
    mismatched = score_videos(videos, prompts[3:] + prompts[:3])  # each video against a prompt of another colour
    assert mismatched.scores["colour"] == 0.0
    assert not targets_met(adherence_metrics("t2v", "x", mismatched.scores, 24))["t2v/colour"]


def test_held_out_clips_of_the_val_shards_score_full_marks(demo_dir):
    clips = report_card.read_clips(demo_dir / "val")
    held_out = [clip for clip in clips if clip.labels is not None]
    assert {clip.key for clip in clips} - {clip.key for clip in held_out} == {
        "yellow_circle_gradient", "cyan_square_wide", "image_blue_triangle"}  # the demo's held-out sources
    assert len(held_out) == 2
    videos = [clip.video(17, (64, 64)) for clip in held_out]
    assert all(video.shape == (3, 17, 64, 64) for video in videos)
    assert score_videos(videos, [clip.labels for clip in held_out]).scores["all"] == 1.0


def test_verdicts_and_targets():
    cases = [(Metric("a", "a", 26.0, "dB", 25.0), True, "PASS"), (Metric("b", "b", 0.5, "%", 0.6), False, "FAIL"),
             (Metric("c", "c", 1.2), None, "INFO"), (Metric("d", "d", None, "dB", 20.0, "no clips"), False, "N/A")]
    for metric, passed, verdict in cases:
        assert (metric.passed, metric.verdict) == (passed, verdict), metric
    assert targets_met([case[0] for case in cases]) == {"a": True, "b": False, "d": False}
    assert cases[1][0].formatted_value == "50.0%" and cases[1][0].formatted_target == ">= 60.0%"


def test_noisy_decoding_is_not_applicable_without_timestep_conditioning():
    rows = [{"key": "x", "shape": [17, 64, 64], "psnr_t0": 30.0, "ssim_t0": 0.9}]
    metrics = {metric.name: metric for metric in report_card.vae_metrics(rows, 0.05, timestep_conditioned=False)}
    assert (metrics["vae/psnr_t0"].verdict, metrics["vae/ssim_t0"].verdict) == ("PASS", "PASS")
    assert metrics["vae/psnr_t0.05"].verdict == "N/A" and "timestep conditioning" in metrics["vae/psnr_t0.05"].note


def test_the_evaluator_reads_the_vae_reconstructions_of_world_clips_only():
    scene = SceneSpec("square", "red", "left_to_right", "striped", "blue", 17)
    clip = torch.from_numpy(np.stack(list(render_scene(scene, 64, 64)))).permute(3, 0, 1, 2).float() / 127.5 - 1
    evaluator = report_card.DemoWorldEvaluator()
    world = {"read": evaluator.predict(clip), "labels": report_card.caption_labels(scene.caption)}
    wrong = {"read": evaluator.predict(clip), "labels": report_card.caption_labels(
        SceneSpec("circle", "red", "still", "dotted", "white", 17).caption)}  # right colour, wrong shape and motion
    assert report_card.caption_labels("two shots: a cut between scenes") is None
    metrics = {metric.name: metric for metric in report_card.reconstruction_adherence([world, wrong, {"key": "multi"}])}
    assert metrics["vae_read/colour"].value == metrics["vae_read/found"].value == 1.0
    assert metrics["vae_read/shape"].value == metrics["vae_read/motion"].value == 0.5
    assert all(metric.minimum is None for metric in metrics.values())  # a ceiling for the DiT, not a target
    empty = {metric.name: metric for metric in report_card.reconstruction_adherence([{"key": "multi"}])}
    assert empty["vae_read/colour"].value is None and "single-shot" in empty["vae_read/colour"].note


def test_last_validation_loss_is_the_latest_step(tmp_path):
    assert report_card.last_validation_loss(tmp_path) is None
    first, resumed = tmp_path / "csv" / "metrics.csv", tmp_path / "csv" / "resumed-step4" / "metrics.csv"
    resumed.parent.mkdir(parents=True)
    first.write_text("epoch,step,train/loss,val/loss\n0,1,1.0,\n0,1,,0.9\n1,3,,0.8\n")
    assert report_card.last_validation_loss(tmp_path) == (0.8, 3, str(first))
    resumed.write_text("epoch,step,val/loss\n2,5,0.7\n2,6,\n")
    assert report_card.last_validation_loss(tmp_path) == (0.7, 5, str(resumed))


def test_contact_sheet_height_is_rows_times_row_height():
    frame = np.zeros((32, 48, 3), dtype=np.uint8)
    rows = [SheetRow("one", [[frame] * 3]), SheetRow("two\n" + "long words " * 60, [[frame], [frame] * 2])]
    sheet = render_contact_sheet(rows, tile_height=48)
    assert sheet.height == 2 * row_height(48)
    assert sheet.width >= 360 + 3 * 72  # the label column and three frames scaled to 72x48
    with pytest.raises(ValueError, match="at least one row"):
        render_contact_sheet([])


def test_missing_inputs_and_bad_arguments_are_errors(tmp_path):
    with pytest.raises(SystemExit, match="no vae checkpoint at .*make demo"):
        report_card.main([str(tmp_path)])
    for arguments in (["--frames", "10"], ["--height", "50"], ["--guidance-scale", "0.5"], ["--prompts", "0"],
                      ["--vae-frames", "10"], ["--vae-noise-timestep", "0"], ["--vae-height", "50"],
                      ["--vae-height", "-32"]):
        with pytest.raises(SystemExit) as error:
            report_card.parse_args([str(tmp_path), *arguments])
        assert error.value.code == 2, arguments


def test_clips_are_batched_by_shape_in_first_seen_order():
    shapes = [(3, 9, 64, 64), (3, 9, 64, 96), (3, 9, 64, 64), (3, 9, 64, 64), (3, 9, 64, 96)]
    assert report_card.batches_by_shape(shapes, batch_size=2) == [[0, 2], [3], [1, 4]]
    assert report_card.batches_by_shape([], batch_size=2) == []


def test_noised_decoding_noises_the_mean_to_t_and_tells_the_decoder_t():
    calls = []

    class RecordingDecoder:
        def decode(self, latents, timestep, generator):
            calls.append((latents.clone(), timestep, generator))
            return latents

    mean = torch.randn(2, 4, 1, 2, 2)
    generator, decoder_generator = torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)
    decoded = report_card.decode_noised(RecordingDecoder(), mean, 0.05, generator, decoder_generator)
    epsilon = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(decoded, 0.95 * mean + 0.05 * epsilon)
    assert calls[0][1] == 0.05 and calls[0][2] is decoder_generator
