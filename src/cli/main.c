/* main.c - the legodnn command: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "cli.h"

static const char usage[] =
    "usage: legodnn <command> [options]\n"
    "\n"
    "commands:\n"
    "  info MODEL.onnx [--json]                 ops, shapes, parameters, FLOPs, size\n"
    "  run MODEL.onnx --input IN.bin ... --output OUT.bin ... [--repeat N] [--json]\n"
    "                                           inference on raw little-endian float32 files\n"
    "  train MODEL.onnx|resnet18[:W] --data DATASET --out TRAINED.onnx [options]\n"
    "                                           train or fine-tune a classifier (see train --help)\n"
    "  eval MODEL.onnx --data DATASET [--json]  top-1 accuracy on the test split\n"
    "  blocks MODEL.onnx [--max-ratio 0.125] [--json]\n"
    "                                           the blocks automatic detection finds\n"
    "  extract MODEL.onnx --out LIB [--sparsity 0,0.3,0.6,0.8] [--max-ratio 0.125] [--force] [--json]\n"
    "                                           blocks and their pruned descendants into a block library\n"
    "  retrain LIB --data DATASET [--epochs 2] [--batch 128] [--lr 3e-4] [--holdout 0.1] [--resume] [--json]\n"
    "                                           retrain every descendant on the teacher's block features\n"
    "  profile LIB --data DATASET [--max-test N] [--json]\n"
    "                                           accuracy loss of every descendant, into the manifest\n"
    "  latency LIB [--repeat 30] [--batch 1] [--threads N] [--json]\n"
    "                                           time every descendant on this device, kept in LIB\n"
    "  scale LIB --latency MS --memory BYTES [--export OUT.onnx] [--json]\n"
    "                                           the most accurate composition that fits the budgets\n"
    "  serve LIB --trace BUDGETS.csv [--data DATASET] [--json]\n"
    "                                           run inference while the budgets change, switching blocks live\n"
    "  report LIB [--serve SERVE.json] [--plot OUT.png|OUT.svg] [--json]\n"
    "                                           what the library offers here: table, optimizer and switch time, plot\n"
    "  version                                  print the version\n"
    "\n"
    "Exit status: 0 success, 1 a problem with the input (the message names it), 2 usage.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
#ifdef __GLIBC__
    /* glibc raises its mmap threshold (up to 32 MiB) whenever it frees a
     * mapped block; buffers of a few MB then come from the heap, and the
     * holes they leave stay resident: retraining a full-width ResNet18
     * peaked some 40 MB higher. A fixed threshold keeps every block of
     * 1 MiB or more a mapping of its own, given back when freed. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    const char *cmd = argv[1];
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "blocks") == 0)
        return cmd_blocks(argc - 1, argv + 1);
    if (strcmp(cmd, "extract") == 0)
        return cmd_extract(argc - 1, argv + 1);
    if (strcmp(cmd, "retrain") == 0)
        return cmd_retrain(argc - 1, argv + 1);
    if (strcmp(cmd, "profile") == 0)
        return cmd_profile(argc - 1, argv + 1);
    if (strcmp(cmd, "latency") == 0)
        return cmd_latency(argc - 1, argv + 1);
    if (strcmp(cmd, "scale") == 0)
        return cmd_scale(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0)
        return cmd_report(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("legodnn %s\n", LEGO_VERSION);
        return EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    fprintf(stderr, "legodnn: unknown command '%s'\n%s", cmd, usage);
    return EXIT_USAGE;
}
