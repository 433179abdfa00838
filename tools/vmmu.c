/* SPDX-License-Identifier: MIT */
/* The `vmmu` command-line tool: a dispatcher over its subcommands. */
#include <stdio.h>
#include <string.h>

#include "tool.h"
#include "vmmu/vmmu.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static int cmd_version(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: vmmu version\nPrints the library's version.  No options.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "vmmu version: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
    printf("vmmu %s\n", vmmu_version());
    return 0;
}

static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"demo", vmmu_tool_demo, "build a small vm, perform accesses, say what happened"},
    {"run", vmmu_tool_run, "run a guest program on the reference x86-64 emulator"},
    {"translate", vmmu_tool_translate,
     "translate linear addresses through x86 page tables in a memory image"},
    {"version", cmd_version, "print the library version"},
    {"help", cmd_help, "show this help, or `vmmu help CMD`: CMD's options"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: vmmu <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`vmmu <command> --help` describes a command's options.  `vmmu --help`\n"
                 "and `vmmu --version` are `vmmu help` and `vmmu version`.\n");
}

/* `vmmu help` lists the commands; `vmmu help CMD` is `vmmu CMD --help`. */
static int cmd_help(int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "vmmu help: one command at a time\n");
        return 2;
    }
    if (argc == 2 && strcmp(argv[1], "help") && strcmp(argv[1], "--help") &&
        strcmp(argv[1], "-h")) {
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
            if (!strcmp(argv[1], commands[i].name)) {
                char *help_argv[] = {argv[1], "--help", NULL};
                return commands[i].run(2, help_argv);
            }
        }
        fprintf(stderr, "vmmu help: unknown command '%s'\n", argv[1]);
        return 2;
    }
    usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cmd_help(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version"))
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vmmu: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
