"""Tiny text/image encoders, a tiny trained tokenizer and a whole tiny Wan I2V pipeline saved by diffusers, sized to
`configs/swap_tiny.py` (text and image width 32), for the encoder and pipeline tests. Nothing is downloaded: the
tokenizer is a Unigram model trained here on a few sentences."""

from __future__ import annotations

import pathlib

import torch

SENTENCES = ["a cat walks on the grass", "a red car drives down the road at night", "the dog jumps over a fence",
             "a woman in a blue dress dances", "sunlight on the water", "two birds sit on a wire"] * 3
TEXT_DIM = IMAGE_DIM = 32  # configs/swap_tiny.py


def tiny_tokenizer():
    """A transformers `T5TokenizerFast` over a Unigram vocabulary trained on `SENTENCES` (ends prompts with </s>)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(SENTENCES, trainers.UnigramTrainer(vocab_size=60, unk_token="<unk>",
                                                               special_tokens=["<pad>", "</s>", "<unk>"]))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)


def tiny_umt5(seed: int = 0, **kw):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    cfg = dict(vocab_size=64, d_model=TEXT_DIM, d_kv=8, num_heads=4, d_ff=48, num_layers=2, **kw)
    return UMT5EncoderModel(UMT5Config(**cfg)).eval()


def tiny_clip(seed: int = 0, with_projection: bool = False, **kw):
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(**{**dict(hidden_size=IMAGE_DIM, intermediate_size=64, num_hidden_layers=3,
                                     num_attention_heads=4, image_size=28, patch_size=14, projection_dim=16,
                                     hidden_act="gelu"), **kw})
    return (CLIPVisionModelWithProjection if with_projection else CLIPVisionModel)(cfg).eval()


def tiny_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})


def tiny_pipeline(seed: int = 0):
    """`WanImageToVideoPipeline` whose transformer fits `configs/swap_tiny.py`'s base (I2V, 36 input channels)."""
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline,
                           WanTransformer3DModel)

    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16,
                                        in_channels=36, out_channels=16, text_dim=TEXT_DIM, freq_dim=32, ffn_dim=64,
                                        num_layers=2, cross_attn_norm=True, eps=1e-6, image_dim=IMAGE_DIM,
                                        added_kv_proj_dim=32).eval()
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1).eval()
    return WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=tiny_umt5(seed + 1), vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                   image_processor=tiny_processor(), image_encoder=tiny_clip(seed + 2),
                                   transformer=transformer)


def save_tiny_pipeline(folder: pathlib.Path, seed: int = 0):
    """Saves `tiny_pipeline(seed)` to `folder` with `save_pretrained`; returns the pipeline."""
    pipe = tiny_pipeline(seed)
    pipe.save_pretrained(str(folder))
    return pipe

