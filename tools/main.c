/* tessera: one command, subcommands over libtessera. */
#include "cli.h"

#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand COMMANDS[] = {
    {"train", cmd_train, "train a model (from an architecture, or resume a checkpoint)"},
    {"eval", cmd_eval, "top-1, top-5, per-class precision/recall and confusion matrix on a dataset"},
    {"predict", cmd_predict, "classify PNG/JPEG/PGM/PPM images, dataset samples or texts"},
    {"decompose", cmd_decompose, "cut a trained classifier into per-class modules (.tsm)"},
    {"prune", cmd_prune, "remove filters: an architecture before training, or a trained model (then fine-tune)"},
    {"extract", cmd_extract, "a smaller model for a few of a classifier's classes, without retraining"},
    {"quantize", cmd_quantize, "int8 inference for a trained CNN, calibrated on a few hundred images"},
    {"compose", cmd_compose, "build a classifier from modules, without retraining"},
    {"patch", cmd_patch, "answer a weak model's class with a module from a stronger model"},
    {"replace", cmd_replace, "swap one class's module for another model's"},
    {"reuse", cmd_reuse, "a classifier from modules of different models and datasets, evaluated"},
    {"import", cmd_import, "read an ONNX model (--check lists unsupported nodes)"},
    {"export", cmd_export, "write a model as ONNX (opset 13)"},
    {"bench", cmd_bench, "latency and throughput of a model (inference, or --train steps)"},
    {"report", cmd_report, "one self-contained HTML report: curves, confusion, mistakes, saliency, modules"},
    {"info", cmd_info, "layers, output shapes, parameters and MACs of a model or architecture"},
    {"zoo", cmd_zoo, "list the built-in architectures, or print one"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: tessera COMMAND [options]   (tessera help COMMAND, or COMMAND --help, for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\ntessera %s. Exit codes: docs/cli.md.\n", TS_VERSION_STRING);
}

int main(int argc, char **argv) {
#ifdef __GLIBC__
    /* Blocks up to 32 MB are taken from the heap and, when freed, stay there for the next
     * model, batch or module instead of going back to the kernel and faulting in again:
     * glibc's default returns them (its dynamic threshold only learns after the fact).
     * A process policy, so the CLI's and not the library's. Measured on decompose of a
     * small Fashion-MNIST CNN (3,000 samples, 10 modules): 287k -> 125k page faults,
     * 4.3 s -> 3.4 s. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "help") && argc > 2) { /* tessera help CMD: that command's help */
        for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
            if (!strcmp(argv[2], COMMANDS[i].name)) {
                char *help[] = {"--help", NULL};
                return COMMANDS[i].run(1, help);
            }
        fprintf(stderr, "tessera help: unknown command '%s' (see tessera --help)\n", argv[2]);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("tessera %s\n", TS_VERSION_STRING);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) {
            const int rc = COMMANDS[i].run(argc - 2, argv + 2);
            cli_json_finish(rc, rc ? "see stderr" : NULL); /* --json: the document ends with the exit code */
            return rc;
        }
    fprintf(stderr, "tessera: unknown command '%s' (see tessera --help)\n", argv[1]);
    return EXIT_USAGE;
}
