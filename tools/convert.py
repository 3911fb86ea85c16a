"""Convert Segmenter weights between formats: ours (.pdparams / .pth / .safetensors), the official checkpoint,
PaddleSeg's released models, timm ViT, Google .npz, MMSegmentation (Segmenter, ViT/DeiT UPerNet) and mmpretrain
ViT. The destination format follows DST's extension; `--to mmseg` writes MMSeg's layout (.pth)."""
import argparse
import sys

from segmenter.convert import FORMATS, UnsafeFileError, convert
from segmenter.resample import POS_EMBED_INTERPOLATIONS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src", help="source weights file")
    p.add_argument("dst", help="destination: .pdparams (Paddle), .pth (PyTorch) or .safetensors")
    p.add_argument("--from", dest="fmt", choices=FORMATS, default=None,
                   help="source family; recognised from the keys when omitted")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes of the model to build on backbone-only weights (checked against whole models)")
    p.add_argument("--save-config", default=None, metavar="CFG.yml",
                   help="also write a complete PaddleSeg config that builds exactly this model")
    p.add_argument("--base-config", default=None,
                   help="dataset config the written config inherits (default: configs/_base_/ade20k.yml)")
    p.add_argument("--num-heads", type=int, default=None, help="encoder heads (default: embed_dim // 64)")
    p.add_argument("--decoder-heads", type=int, default=None, help="mask decoder heads (default: d_model // 64)")
    p.add_argument("--img-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="training size the pos_embed grid belongs to (default: from the weights)")
    p.add_argument("--norm-eps", type=float, default=None, help="LayerNorm eps (default: the family's)")
    p.add_argument("--pos-embed-interp", choices=POS_EMBED_INTERPOLATIONS, default=None,
                   help="pos_embed resampling (default: the family's)")
    p.add_argument("--to", choices=("mmseg",), default=None,
                   help="write MMSegmentation's layout ({meta, state_dict}, a .pth MMSeg loads) instead of ours")
    p.add_argument("--out-indices", type=int, nargs="+", default=None,
                   help="UPerNet: blocks whose maps feed the neck/head (default: evenly spaced, e.g. 2 5 8 11)")
    p.add_argument("--neck-scales", type=float, nargs="+", default=None,
                   help="UPerNet: MultiLevelNeck scales (default: 4 2 1 0.5)")
    p.add_argument("--pool-scales", type=int, nargs="+", default=None,
                   help="UPerNet: PPM pool sizes (default: 1 2 3 6)")
    p.add_argument("--layer-scale-init", type=float, default=None,
                   help="weights with layer scale: the init value the written config records for training from "
                        "scratch (timm's DeiT-III 1e-6; default 1e-5); loaded weights replace it")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    overrides = {"num_heads": args.num_heads, "decoder_heads": args.decoder_heads, "img_size": args.img_size,
                 "norm_eps": args.norm_eps, "pos_embed_interp": args.pos_embed_interp,
                 "out_indices": args.out_indices, "neck_scales": args.neck_scales, "pool_scales": args.pool_scales,
                 "layer_scale_init": args.layer_scale_init}
    try:
        conv = convert(args.src, args.dst, args.fmt, overrides, args.save_config, args.base_config, args.num_classes,
                       args.to)
    except (ValueError, UnsafeFileError, OSError) as e:
        print(f"convert: {e}\nNothing was written.", file=sys.stderr)
        return 1
    a = conv.arch
    if a.decode_head:
        neck = f" + MultiLevelNeck (scales {a.neck['scales']})" if a.neck else ""
        aux = f" + FCN aux (map {a.auxiliary_head['in_index']})" if a.auxiliary_head else ""
        what = f"UPerHead{neck}{aux}, {a.num_classes} classes, maps of blocks {a.out_indices}"
    else:
        what = f"{a.decoder['name']} decoder, {a.num_classes} classes" if a.decoder else "backbone only"
    print(f"{args.src} ({conv.fmt}) -> {args.dst}: ViT D={a.embed_dim} depth={a.depth} heads={a.num_heads} "
          f"patch={a.patch_size} img={a.img_size}"
          f"{', layer scale' if a.layer_scale_init is not None else ''}, {what}; {len(conv.state)} tensors, "
          f"{len(conv.dropped)} dropped on purpose {conv.dropped[:4]}")
    if args.save_config:
        print(f"config: {args.save_config}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
