"""`samkit export-onnx`: write the ONNX decoder (official interface) and optionally the encoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_model_argument, bounded, out_file


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the prompt encoder + mask decoder (and the image encoder) to ONNX",
        description="Write the decoder as an ONNX graph with the official segment_anything "
        "export's inputs (image_embeddings, point_coords, point_labels, mask_input, "
        "has_mask_input, orig_im_size) and outputs (masks, iou_predictions, low_res_masks). "
        "With --text the graph takes one more input, text_embeddings: (1, D) float32, a "
        "phrase's vector from the model's text encoder, or (0, D) for a prompt without text.",
        epilog="examples:\n  samkit export-onnx --model vit_b --out decoder.onnx "
        "--encoder-out encoder.onnx\n"
        "  samkit export-onnx --model text_model.safetensors --text --out decoder_text.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(p)
    p.add_argument("--out", required=True, type=out_file, help="decoder .onnx file to write")
    p.add_argument(
        "--encoder-out", type=out_file, help="also write the image encoder to this .onnx file"
    )
    p.add_argument(
        "--opset",
        type=bounded(int, 14),
        default=17,
        help="ONNX opset: 14 or later, the first with attention (default 17)",
    )
    p.add_argument(
        "--return-single-mask", action="store_true", help="only the best mask, as the demo uses"
    )
    p.add_argument(
        "--use-stability-score", action="store_true", help="stability scores replace IoU scores"
    )
    p.add_argument(
        "--return-extra-metrics",
        action="store_true",
        help="also output stability_scores and areas",
    )
    p.add_argument(
        "--text",
        action="store_true",
        help="add the text_embeddings input (needs a model with a text head)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write each graph with int8 weights (onnxruntime dynamic quantization) "
        "next to it, as NAME.int8.onnx",
    )
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from .. import load
    from ..export import export_decoder, export_encoder, quantize_dynamic_int8

    if args.precision in ("bf16", "int8"):
        raise ValueError(
            f"--precision {args.precision}: export-onnx writes fp32 graphs (auto and fp32 both "
            "mean that here). For int8 graphs add --int8; bf16 is chosen when a graph runs "
            "(OnnxPredictor(..., runtime='openvino', precision='bf16'))"
        )
    model = load(args.model).eval()
    if args.text and model.prompt_encoder.text_projection is None:
        raise ValueError(
            f"--text: {args.model} has no text token (prompt_encoder.text_projection), so its "
            "decoder cannot take text; export without --text, or give a model trained with text"
            + (
                ". Its text grounder picks among the decoder's masks in Python and is not part "
                "of the decoder graph"
                if model.text_grounder is not None
                else ""
            )
        )
    written = []
    path = export_decoder(
        model,
        args.out,
        return_single_mask=args.return_single_mask,
        use_stability_score=args.use_stability_score,
        return_extra_metrics=args.return_extra_metrics,
        opset=args.opset,
        text_input=args.text,
    )
    written.append(("decoder", path))
    if args.encoder_out:
        written.append(("encoder", export_encoder(model, args.encoder_out, opset=args.opset)))
    if args.int8:
        written += [(f"{n} int8", quantize_dynamic_int8(g, int8_path(g))) for n, g in written]
    for name, graph in written:
        print(f"{name}: {graph}")
    return 0


def int8_path(path: Path) -> Path:
    """decoder.onnx -> decoder.int8.onnx"""
    return path.with_name(f"{path.stem}.int8{path.suffix}")
