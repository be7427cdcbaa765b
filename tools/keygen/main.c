/* fedvigil-keygen: make the Ed25519 key pairs that sign global models
 * (the coordinator's) and, optionally, model updates (one per agent).
 *
 *   fedvigil-keygen [--force] [--comment TEXT] NAME
 *       writes NAME.key (private, mode 0600) and NAME.pub (public)
 *   fedvigil-keygen --public NAME.key
 *       prints the public key line of a private key file
 *
 * The private key is never printed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedvigil/sign.h"
#include "fedvigil/util.h"
#include "fedvigil/version.h"

#define PROG "fedvigil-keygen"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [--force] [--comment TEXT] NAME\n"
		"       " PROG " --public NAME.key\n"
		"Make an Ed25519 key pair for signed fedvigil messages: NAME.key (private,\n"
		"mode 0600: give it to sign.key_file of the coordinator or an agent) and\n"
		"NAME.pub (public: sign.model_key of the agents, or <agent>.pub in the\n"
		"coordinator's sign.agent_keys directory). See docs/security.md.\n"
		"\n"
		"      --comment TEXT  written into both files (default: NAME's file name)\n"
		"  -f, --force         replace existing NAME.key / NAME.pub\n"
		"      --public FILE   print the public key of the private key FILE\n"
		"  -h, --help          show this help\n"
		"  -V, --version       show the version\n"
		"Exit: 0 ok, 1 error, 2 usage.\n");
}

int main(int argc, char **argv)
{
	enum { OPT_COMMENT = 256, OPT_PUBLIC };
	static const struct option longopts[] = {
		{ "comment", required_argument, NULL, OPT_COMMENT },
		{ "force", no_argument, NULL, 'f' },
		{ "public", required_argument, NULL, OPT_PUBLIC },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *comment = NULL, *public = NULL, *name, *base;
	char key_path[4096], pub_path[4096], err[600], pub[FV_SIGN_PUB_TEXT];
	struct fv_sign_key k;
	bool force = false;
	int c, r;

	fv_cli_init(PROG);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fhV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_COMMENT:
			if (strpbrk(optarg, "\r\n") || strlen(optarg) > 200)
				return fv_cli_usage_error("--comment: one line of at most 200 characters");
			comment = optarg;
			break;
		case 'f':
			force = true;
			break;
		case OPT_PUBLIC:
			public = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf(PROG " " FV_VERSION "\n");
			return 0;
		case ':':
			return fv_cli_usage_error("%s needs a value", argv[optind - 1]);
		default:
			return fv_cli_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (public) {
		if (optind < argc)
			return fv_cli_usage_error("--public takes no NAME");
		if (fv_sign_key_load(public, &k, err, sizeof(err)) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			return 1;
		}
		fv_sign_pub_text(k.pk, pub);
		fv_sign_key_wipe(&k);
		printf("%s\n", pub);
		return 0;
	}
	if (optind + 1 != argc)
		return fv_cli_usage_error("give one NAME (the files NAME.key and NAME.pub are written)");
	name = argv[optind];
	if (!name[0] || (size_t)snprintf(key_path, sizeof(key_path), "%s.key", name) >=
				sizeof(key_path))
		return fv_cli_usage_error("NAME is empty or too long");
	snprintf(pub_path, sizeof(pub_path), "%s.pub", name);
	base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	if (fv_sign_keygen(&k) < 0) {
		fprintf(stderr, PROG ": libsodium failed to initialise\n");
		return 1;
	}
	r = fv_sign_key_save(key_path, pub_path, &k, comment ? comment : base, force, err,
			     sizeof(err));
	fv_sign_pub_text(k.pk, pub);
	fv_sign_key_wipe(&k);
	if (r < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	printf("wrote %s (private, mode 0600) and %s\n%s\n", key_path, pub_path, pub);
	return 0;
}
