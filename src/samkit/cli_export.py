"""`samkit export-onnx`: write the ONNX decoder (official interface) and optionally the encoder."""

from __future__ import annotations

import argparse


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the prompt encoder + mask decoder (and the image encoder) to ONNX",
        description="Write the decoder as an ONNX graph with the official segment_anything "
        "export's inputs (image_embeddings, point_coords, point_labels, mask_input, "
        "has_mask_input, orig_im_size) and outputs (masks, iou_predictions, low_res_masks).",
        epilog="example:\n  samkit export-onnx --model vit_b --out decoder.onnx "
        "--encoder-out encoder.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model name or weights file")
    p.add_argument("--out", required=True, help="decoder .onnx file to write")
    p.add_argument("--encoder-out", help="also write the image encoder to this .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
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
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from . import load
    from .export import export_decoder, export_encoder

    model = load(args.model).eval()
    path = export_decoder(
        model,
        args.out,
        return_single_mask=args.return_single_mask,
        use_stability_score=args.use_stability_score,
        return_extra_metrics=args.return_extra_metrics,
        opset=args.opset,
    )
    print(f"decoder: {path}")
    if args.encoder_out:
        print(f"encoder: {export_encoder(model, args.encoder_out, opset=args.opset)}")
    return 0
