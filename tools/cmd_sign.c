/*
 * cmd_sign.c - `sitespool sign` and `sitespool verify`: administrator
 * helpers that read and write exactly what stock minisign does, with this
 * site's key (sign) or any public key / a keystore entry (verify).
 */
#include "cli.h"
#include "suggest.h"
#include "../keystore/sigfile.h"
#include "../keystore/trust.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char sign_usage[] =
    "usage: sitespool [-C SITE_ROOT] sign FILE [-x SIGFILE] [-t TRUSTED_COMMENT]\n"
    "\n"
    "Signs FILE with this site's secret key in minisign's prehashed format (default\n"
    "SIGFILE: FILE.minisig). 'minisign -V -p CODE.pub -m FILE' verifies it.\n";

static const char verify_usage[] =
    "usage: sitespool [-C SITE_ROOT] verify FILE [-x SIGFILE] (-p PUBKEY_FILE | --site CODE)\n"
    "\n"
    "Verifies FILE against a minisign signature with a public key file or with the keys\n"
    "this site trusts for CODE, and prints the trusted comment.\n";

int cmd_sign(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *sig_path = NULL, *comment = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "x:t:h", opts, NULL)) != -1) {
        if (ch == 'x')
            sig_path = optarg;
        else if (ch == 't')
            comment = optarg;
        else
            return ch == 'h' ? (fputs(sign_usage, stdout), 0) : cli_usage(sign_usage, "bad option");
    }
    if (optind + 1 != argc) return cli_usage(sign_usage, "sign takes exactly one FILE");
    const char *path = argv[optind];
    char def_sig[PATH_MAX], def_comment[128];
    if (!sig_path) {
        snprintf(def_sig, sizeof def_sig, "%s.minisig", path);
        sig_path = def_sig;
    }
    if (cli_open(c) != 0) return 1;
    if (!comment) {
        snprintf(def_comment, sizeof def_comment, "signed by sitespool site %s at %lld",
                 c->conf.site_code, (long long)ss_now());
        comment = def_comment;
    }
    ss_error e = {0};
    ss_seckey *sk = NULL;
    ss_pubkey pk;
    if (ss_own_key_load(c->root, &c->conf, &sk, &pk, &e) != 0) return cli_fail(&e);
    char uc[64];
    snprintf(uc, sizeof uc, "signature from sitespool site %s", c->conf.site_code);
    int rc = ss_sign_file(sk, path, sig_path, comment, uc, &e);
    ss_seckey_free(sk);
    if (rc != 0) return cli_fail(&e);
    printf("Signed %s into %s\n", path, sig_path);
    return 0;
}

struct verify_ctx {
    const char *path, *sig_path;
    const ss_keyctx *keys;
    ss_sig sig;
    bool ok;
    ss_error e;
};

/* A key of the site verifies the file; the trust rules then say whether
 * that key may be relied on now (not revoked, pending, expired...). */
static int try_key(void *ctx_, const ss_keyrec *k)
{
    struct verify_ctx *ctx = ctx_;
    ss_error e = {0};
    if (ss_verify_file(&k->pk, ctx->path, ctx->sig_path, &ctx->sig, &e) != 0) {
        if (e.code != SS_E_KEYID || ctx->e.code == SS_OK) ctx->e = e;
        return 0;
    }
    ss_verdict v;
    if (ss_trust_judge_use(ctx->keys, k->site, k, true, &v, &ctx->e) != 0) return 1;
    if (v.action == SS_TRUST_ACCEPT) {
        ctx->ok = true;
        ctx->e = (ss_error){0};
    } else {
        ss_err(&ctx->e, SS_E_PERM, "the signature is by key %s of site %s, which is not usable: %s",
               k->key_id, k->site, ss_trust_reason_text(v.reason));
    }
    return 1;
}

int cmd_verify(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"site", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sig_path = NULL, *pub = NULL, *site = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "x:p:h", opts, NULL)) != -1) {
        if (ch == 'x')
            sig_path = optarg;
        else if (ch == 'p')
            pub = optarg;
        else if (ch == 's')
            site = optarg;
        else
            return ch == 'h' ? (fputs(verify_usage, stdout), 0)
                             : cli_usage(verify_usage, "bad option");
    }
    if (optind + 1 != argc || (!pub == !site))
        return cli_usage(verify_usage, "verify takes one FILE and either -p or --site");
    if (site && !ss_site_code_valid(site)) return suggest_bad_site(verify_usage, "--site", site);
    struct verify_ctx ctx = {.path = argv[optind]};
    char def_sig[PATH_MAX];
    if (!sig_path) {
        snprintf(def_sig, sizeof def_sig, "%s.minisig", ctx.path);
        sig_path = def_sig;
    }
    ctx.sig_path = sig_path;
    if (pub) {
        ss_pubkey pk;
        if (ss_pubkey_load(pub, &pk, NULL, 0, &ctx.e) == 0 &&
            ss_verify_file(&pk, ctx.path, sig_path, &ctx.sig, &ctx.e) == 0)
            ctx.ok = true;
    } else {
        if (cli_open(c) != 0) return 1;
        ss_keyctx keys = {c->root, &c->conf, &c->db, &c->rep, false, NULL};
        ctx.keys = &keys;
        if (ss_keys_foreach(&c->db, site, try_key, &ctx, &ctx.e) != 0) return cli_fail(&ctx.e);
        if (!ctx.ok && ctx.e.code == SS_OK)
            ss_err(&ctx.e, SS_E_NOENT, "no key of site %s is in the keystore", site);
    }
    if (!ctx.ok) return cli_fail(&ctx.e);
    printf("Signature and comment signature verified\nTrusted comment: %s\n",
           ctx.sig.trusted_comment);
    return 0;
}
