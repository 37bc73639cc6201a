"""``python -m engine {sample,train,eval,report,inpaint-study,info}``: the engine from the command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import checkpoints
from .generate import generate, sampler_options
from .models import RANDOM_LABEL
from .samplers import SAMPLERS
from .schedules import SCHEDULES, SPACINGS, get_schedule


def _step_counts(text: str) -> tuple[int, ...]:
    """``10,20,50`` → (10, 20, 50): positive whole numbers, each at most once."""
    try:
        counts = tuple(int(s) for s in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"steps must be distinct positive whole numbers separated by commas, e.g. 10,20,50; got {text!r}")
    return counts


def _for_model(parse):
    """``[MODEL=]VALUES`` → (MODEL or None for every model, parse(VALUES)): a report option for one model or all."""
    def parse_for_model(text: str):
        model, sep, values = text.rpartition("=")
        return (model.strip() or None) if sep else None, parse(values)
    return parse_for_model


def _names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"give names separated by commas, e.g. linear,cosine; got {text!r}")
    return names


def _option(text: str) -> tuple[str, object]:
    """``key=value`` with value parsed as JSON when it can be (numbers, true/false), else kept as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"sampler option must look like key=value; got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _label(text: str) -> int | str:
    """A class index, or "random" (each sample's class drawn from the seed: engine.models.guided)."""
    if text == RANDOM_LABEL:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"label must be a class index or {RANDOM_LABEL!r}; got {text!r}") from None


def _class_args(args) -> dict:
    """The label and guidance scale a command passes on, when given (a conditional model's)."""
    out = {} if args.label is None else {"label": args.label}
    if getattr(args, "guidance_scale", None) is not None:
        out["guidance_scale"] = args.guidance_scale
    return out


def cmd_sample(args) -> int:
    import torch

    from .pictures import save_samples

    model = checkpoints.load_model(args.model, device=args.device)
    steps = generate(
        model, schedule=args.schedule, sampler=args.sampler, steps=args.steps, seed=args.seed, n=args.n,
        spacing=args.spacing, **_class_args(args), **dict(args.option),
    )
    last = None
    for last in steps:
        pass
    save_samples(last.x_t, args.out)
    print(f"wrote {args.out}: {args.n} samples, {last.nfe} network evaluations, {torch.get_num_threads()} threads")
    return 0


def cmd_train(args) -> int:
    """``train`` (a TrainConfig) or ``distill`` (a DistillConfig: the teacher's pairs, then the same loop)."""
    if args.command == "distill":
        from .distill import DistillConfig as Config, distill as run
    else:
        from .train import TrainConfig as Config, train as run

    cfg = Config.from_file(args.config)
    for key, value in args.set:
        cfg = Config.from_dict({**cfg.__dict__, key: value})
    result = run(cfg, steps=args.steps, quiet=args.quiet)
    print(f"{cfg.name}: trained to step {result['step']} ({result['wall_time_s']:.0f} s)")
    return 0


def cmd_eval(args) -> int:
    from . import evaluate
    from .data import TOYS

    model = checkpoints.load_model(args.model, device=args.device)
    dataset = model.card.get("data", {}).get("dataset")
    opts = dict(args.option)
    common = dict(sampler=args.sampler, schedule=args.schedule, steps=args.steps, n=args.n, seed=args.seed,
                  **_class_args(args), **opts)
    if dataset in TOYS:
        result = evaluate.evaluate_toy(model, dataset, **common)
    else:
        classifier_name = args.classifier or f"{dataset}-classifier"
        classifier = evaluate.load_classifier(classifier_name)
        # recorded with the figures; the default is generate's: the schedule's own (flow), else the sampler's
        spacing = args.spacing or get_schedule(args.schedule).spacing or SAMPLERS[args.sampler].spacing
        result = evaluate.evaluate_images(model, classifier, dataset, spacing=spacing, compile=args.compile,
                                          precision=args.precision, **common)
        result["classifier"] = {"name": classifier_name, "sha256": checkpoints.model_card(classifier_name)["sha256"]}
    print(json.dumps(result, indent=2))
    if args.record:
        key = evaluate.metrics_key(result)
        checkpoints.record_metrics(args.model, key, evaluate.card_figures(result))
        print(f"recorded in {args.model}.json under metrics[{key!r}]", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from . import report

    models = report.DEFAULT_MODELS if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    grid = report.QUICK if args.quick else report.FULL
    narrowing = [(option, model, values) for option in ("steps", "schedules", "long_run_schedules", "samplers")
                 for model, values in getattr(args, option)]
    unknown = sorted({model for _, model, _ in narrowing if model is not None and model not in models})
    if unknown:
        print(f"{', '.join(unknown)} not among --models ({', '.join(models)})", file=sys.stderr)
        return 2

    def narrowed(model):
        mine = {option: values for option, m, values in narrowing if m is None}
        mine.update({option: values for option, m, values in narrowing if m is not None and m == model})
        return grid.narrowed(**mine)

    try:
        every = narrowed(None)
        grids = {m: narrowed(m) for m in models}
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    n = every.n if args.n is None else args.n
    command = report.command_line(models, n, args.seed, args.out, args.device, args.quick, narrowing)
    result = report.run_report(models, grid=every, n=n, seed=args.seed, out=args.out, device=args.device, command=command,
                               grids=grids)
    if result["page"] is None:  # a rank other than 0 under torchrun: rank 0 speaks for the run
        return 0
    for name, why in result["skipped"].items():
        print(f"not evaluated: {name}: {why}", file=sys.stderr)
    print(f"wrote {result['page']} and {len(result['figures'])} figures: {result['computed']} cells computed, "
          f"{result['reused']} reused from {result['cache']}")
    return 0


def cmd_inpaint_study(args) -> int:
    from .report import inpainting

    result = inpainting.study(args.model, n=args.n, seed=args.seed, out=args.out)
    print(f"wrote {args.out}/results/inpainting.json and inpainting.png ({len(result['records'])} records); "
          "the results page shows them when its command is run again")
    return 0


def cmd_train_classifier(args) -> int:
    from . import classifier

    result = classifier.train_classifier(args.dataset, epochs=args.epochs, seed=args.seed, pooled=args.pooled)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_validate_evaluator(args) -> int:
    from . import validation

    parts = [f"# How far to trust the evaluator\n\nGenerated by `python -m engine validate-evaluator "
             f"{' '.join('--dataset ' + d for d in args.dataset)} --seed {args.seed}`. Known damage to real held-out "
             f"images, scored by `engine.validation.validate` (engine/evaluate.py gives the figures' definitions). "
             f"Do not edit by hand: re-run the command.\n"]
    for spec in args.dataset:
        dataset, _, n = spec.partition(":")
        rows = validation.validate(dataset, n=int(n or 250), seed=args.seed)
        parts.append(validation.validation_markdown(dataset, rows))
    text = "\n".join(parts)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def cmd_info(args) -> int:
    if args.name:
        print(json.dumps(checkpoints.model_card(args.name), indent=2))
        return 0
    print("models:", ", ".join(checkpoints.list_models()) or "none")
    print("schedules:", ", ".join([*SCHEDULES, "custom"]))
    print("spacings:", ", ".join(SPACINGS))
    for name in SAMPLERS:
        defaults = sampler_options(name)
        if "sde" in defaults:
            defaults["sde"] = "the schedule's kind (vp or ve)"  # what generate() uses when sde is not given
        opts = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "no options"
        spec = SAMPLERS[name]
        print(f"sampler {name}: {opts}; spacing {spec.spacing}; {spec.evals_per_step(spec.options)} network evaluations per step at these defaults")
    return 0


def _sample_parser(sub) -> None:
    s = sub.add_parser("sample", help="sample from a shipped model and save a grid")
    s.add_argument("--model", required=True)
    s.add_argument("--schedule", default="linear")
    s.add_argument("--sampler", default="ddim", choices=list(SAMPLERS))
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--spacing", default=None, choices=list(SPACINGS), help="default: the schedule's own (trailing for flow), else the sampler's (trailing for dpm-solver++, euler, heun; else leading)")
    s.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE", help="sampler option, e.g. eta=0.5")
    s.add_argument("--label", type=_label, default=None, help="a class-conditional model's class, or random (each sample's class drawn from the seed)")
    s.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance w (with --label)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", default="samples.png")
    s.set_defaults(func=cmd_sample)


def _train_parser(sub) -> None:
    for command, text in (("train", "train a model from a JSON config (resumes from its run directory)"),
                          ("distill", "distil a shipped teacher into a few-step student from a JSON config (reflow: "
                                      "the teacher's pairs, then training; resumes from its run directory)")):
        t = sub.add_parser(command, help=text)
        t.add_argument("--config", required=True)
        t.add_argument("--steps", type=int, default=None, help="train until this step (default: the config's)")
        t.add_argument("--set", type=_option, action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field")
        t.add_argument("--quiet", action="store_true")
        t.set_defaults(func=cmd_train)


def _train_classifier_parser(sub) -> None:
    c = sub.add_parser("train-classifier", help="train the evaluator's classifier for a dataset (DATASET-classifier)")
    c.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist", "digits8"])
    c.add_argument("--epochs", type=int, default=30)
    c.add_argument("--pooled", action="store_true",
                   help="the pooled-feature architecture with affine augmentation (engine/evaluate.py Classifier)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_train_classifier)


def _eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="score a model's samples against the training split, beside held-out real images (FD ratio, KID, ...)")
    e.add_argument("--model", required=True)
    e.add_argument("--schedule", default="linear")
    e.add_argument("--sampler", default="ddim", choices=list(SAMPLERS))
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--spacing", default=None, choices=list(SPACINGS), help="default: the schedule's own (trailing for flow), else the sampler's (trailing for dpm-solver++, euler, heun; else leading)")
    e.add_argument("--n", type=int, default=500)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--classifier", default=None, help="default: DATASET-classifier")
    e.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--label", type=_label, default=None, help="a class-conditional model's class, or random (each sample's class drawn from the seed)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--record", action="store_true", help="also store the figures in the model card's metrics")
    e.add_argument("--compile", default="auto", choices=["auto", "always", "never"],
                   help="sample through compiled graphs (engine/serving.py): auto = when n × NFE ≥ evaluate.COMPILE_FROM")
    e.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="the compiled graphs' arithmetic (engine/serving.py; auto = bfloat16 where native)")
    e.set_defaults(func=cmd_eval)


def _report_parser(sub) -> None:
    r = sub.add_parser("report", help="evaluate the sampler × schedule × steps grid; write RESULTS.md and its figures "
                                      "(under torchrun the ranks share the cells)")
    r.add_argument("--models", default=None, help="comma-separated model names (default mnist-ddpm,mnist-ncsn,fashion-ddpm)")
    r.add_argument("--n", "--samples", type=int, default=None,
                   help="samples per cell (default 500; 64 with --quick); spell it --samples after torchrun, whose "
                        "parser reads --n as an abbreviation of its own options")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default="docs", help="writes OUT/RESULTS.md and OUT/results/ (figures, cells.json)")
    r.add_argument("--device", default="auto", help="auto: CUDA when available, else the CPU")
    r.add_argument("--quick", action="store_true", help="a tiny grid (5 and 10 steps, linear and cosine) for a smoke test")
    per_model = " (MODEL=... for one model; repeat the option for several)"
    r.add_argument("--steps", type=_for_model(_step_counts), action="append", default=[], metavar="[MODEL=]N,N,...",
                   help="only these step counts (default 10,20,50,100,1000; 5,10 with --quick)" + per_model)
    r.add_argument("--schedules", type=_for_model(_names), action="append", default=[], metavar="[MODEL=]NAME,...",
                   help="only these of the grid's schedules" + per_model)
    r.add_argument("--long-run-schedules", type=_for_model(_names), action="append", default=[],
                   metavar="[MODEL=]NAME,...", help="run the 1000-step cells only on these schedules (default: all)" + per_model)
    r.add_argument("--samplers", type=_for_model(_names), action="append", default=[], metavar="[MODEL=]NAME,...",
                   help="only these samplers of each model's family" + per_model)
    r.set_defaults(func=cmd_report)


def _inpaint_study_parser(sub) -> None:
    i = sub.add_parser("inpaint-study", help="RePaint against simple replacement on held-out images, scored by the "
                       "evaluator (engine/report/inpainting.py); writes OUT/results/inpainting.json and .png")
    i.add_argument("--model", default="mnist-ddpm")
    i.add_argument("--n", type=int, default=200)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", default="docs")
    i.set_defaults(func=cmd_inpaint_study)


def _validate_evaluator_parser(sub) -> None:
    v = sub.add_parser("validate-evaluator", help="score known corruptions of real images: the evaluator's own test")
    v.add_argument("--dataset", action="append", required=True, metavar="DATASET[:N]",
                   help="a dataset and the images per corruption (default 250); repeat for more")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--out", default=None, help="also write the Markdown here")
    v.set_defaults(func=cmd_validate_evaluator)


def _info_parser(sub) -> None:
    i = sub.add_parser("info", help="list models, schedules and samplers, or print a model card")
    i.add_argument("name", nargs="?")
    i.set_defaults(func=cmd_info)


PARSERS = (_sample_parser, _train_parser, _train_classifier_parser, _eval_parser, _report_parser,
           _inpaint_study_parser, _validate_evaluator_parser, _info_parser)
"""Each adds its subcommand to the parser, in the order ``--help`` lists them."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, checkpoints.CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
