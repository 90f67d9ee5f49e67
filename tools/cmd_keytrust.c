/*
 * cmd_keytrust.c - the administrator's trust decisions and key lifecycle:
 * `sitespool key approve|trust|untrust|revoke|rotate|publish|send-to`.
 *
 * Security stance: these commands are the administrator's acts that the
 * despooler never takes on its own: approving a key offered on first use,
 * trusting a changed key, removing trust, revoking.  What each act may do is
 * decided by keystore/trust.h, like every trust decision; each one is a
 * status message in hman.log, and trust.h's transitions wake a running
 * despooler (the marker hman.box/trust.changed) so held data flows, and an
 * untrust or revoke is obeyed, within a second.
 */
#include "cli.h"
#include "keydir.h"
#include "links.h"
#include "suggest.h"
#include "../inboxes/fileio.h"
#include "../keystore/keyfile.h"
#include "../keystore/trust.h"
#include "../sender/sender.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int bad_site(const char *usage, const char *site)
{
    return suggest_bad_site(usage, "site", site);
}

/* Key ids as administrators copy them: minisign's unpadded form or lower
 * case is accepted and rewritten to the stored form. */
static int typed_key_id(const char *usage, const char *typed, char out[SS_KEYID_HEX + 1])
{
    if (ss_keyid_canonical(typed, out) == 0) return 0;
    return cli_usage(
        usage, "'%s' is not a key id (up to 16 hex digits, as 'sitespool key list' shows)", typed);
}

static ss_keyctx keyctx(cli *c)
{
    return (ss_keyctx){c->root, &c->conf, &c->db, &c->rep, false, NULL};
}

/* Makes key_id of site trusted and lifts a block it caused. */
static int make_trusted(cli *c, const char *site, const char *key_id, const char *how)
{
    ss_error e = {0};
    ss_keyctx k = keyctx(c);
    if (ss_trust_admin_trust(&k, site, key_id, how, &e) != 0) return cli_fail(&e);
    printf("Key %s of site %s is trusted\n", key_id, site);
    return 0;
}

int key_approve(cli *c, int argc, char **argv, const char *usage)
{
    if (argc < 2 || argc > 3) return cli_usage(usage, "approve needs CODE [KEYID]");
    const char *site = argv[1];
    if (!ss_site_code_valid(site)) return bad_site(usage, site);
    char typed[SS_KEYID_HEX + 1];
    if (argc == 3) {
        int bad = typed_key_id(usage, argv[2], typed);
        return bad ? bad : make_trusted(c, site, typed, "approved by an administrator");
    }
    char ids[8][SS_KEYID_HEX + 1];
    ss_error e = {0};
    int n = ss_keys_in_state(&c->db, site, SS_KEY_PENDING, ids, 8, &e);
    if (n < 0) return cli_fail(&e);
    if (n == 1) return make_trusted(c, site, ids[0], "approved by an administrator");
    if (n == 0)
        fprintf(stderr, "sitespool: site %s has no key waiting for approval\n", site);
    else
        fprintf(stderr,
                "sitespool: site %s has %d pending keys; name one: 'sitespool key "
                "approve %s KEYID' (see 'sitespool key list')\n",
                site, n, site);
    return 1;
}

int key_trust(cli *c, int argc, char **argv, const char *usage)
{
    if (argc != 3) return cli_usage(usage, "trust needs CODE KEYID");
    if (!ss_site_code_valid(argv[1])) return bad_site(usage, argv[1]);
    char key_id[SS_KEYID_HEX + 1];
    int bad = typed_key_id(usage, argv[2], key_id);
    if (bad) return bad;
    return make_trusted(c, argv[1], key_id, "trusted by an administrator");
}

int key_untrust(cli *c, int argc, char **argv, const char *usage)
{
    if (argc != 2) return cli_usage(usage, "untrust needs CODE");
    if (!ss_site_code_valid(argv[1])) return bad_site(usage, argv[1]);
    if (!strcmp(argv[1], c->conf.site_code))
        return cli_usage(usage, "%s is this site itself", argv[1]);
    ss_error e = {0};
    ss_keyctx k = keyctx(c);
    int removed = ss_trust_untrust(&k, argv[1], &e);
    if (removed < 0) return cli_fail(&e);
    printf("Removed trust in site %s (%d key(s))\n", argv[1], removed);
    return 0;
}

struct revoke_scan {
    char sites[8][SS_SITE_CODE_MAX + 1];
    int n;
    bool own_current;
};

static int note_revoke_candidate(void *ctx_, const ss_keyrec *k)
{
    struct revoke_scan *ctx = ctx_;
    if (ctx->n < 8) snprintf(ctx->sites[ctx->n++], sizeof ctx->sites[0], "%s", k->site);
    ctx->own_current |= k->state == SS_KEY_OWN;
    return 0;
}

/* "revoke KEYID [--site CODE] [--force]", options in any order. */
static int revoke_args(int argc, char **argv, const char *usage, const char **key,
                       const char **site, bool *force)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--force"))
            *force = true;
        else if (!strcmp(argv[i], "--site") && i + 1 < argc)
            *site = argv[++i];
        else if (argv[i][0] != '-' && !*key)
            *key = argv[i];
        else
            return cli_usage(usage, "revoke needs KEYID [--site CODE] [--force]; '%s' is not one "
                                    "of them",
                             argv[i]);
    }
    if (!*key) return cli_usage(usage, "revoke needs KEYID [--site CODE] [--force]");
    return 0;
}

int key_revoke(cli *c, int argc, char **argv, const char *usage)
{
    const char *site = NULL, *typed = NULL;
    bool force = false;
    int usage_rc = revoke_args(argc, argv, usage, &typed, &site, &force);
    if (usage_rc) return usage_rc;
    argv[1] = (char *)typed;
    if (site && !ss_site_code_valid(site)) return bad_site(usage, site);
    char key_id[SS_KEYID_HEX + 1];
    int bad = typed_key_id(usage, argv[1], key_id);
    if (bad) return bad;
    ss_error e = {0};
    struct revoke_scan scan = {0};
    if (ss_keys_foreach_id(&c->db, key_id, note_revoke_candidate, &scan, &e) != 0)
        return cli_fail(&e);
    int chosen = -1;
    for (int i = 0; i < scan.n; i++)
        if (!site || !strcmp(site, scan.sites[i])) chosen = chosen < 0 ? i : -2;
    if (scan.n == 0 || chosen == -1)
        return ss_err(&e, SS_E_NOENT, "no key %s%s%s is in the keystore ('sitespool key list')",
                      key_id, site ? " of site " : "", site ? site : ""),
               cli_fail(&e);
    if (chosen == -2) {
        fprintf(stderr, "sitespool: key id %s names keys of %d sites:", key_id, scan.n);
        for (int i = 0; i < scan.n; i++)
            fprintf(stderr, " %s", scan.sites[i]);
        fprintf(stderr, "; say which one with 'sitespool key revoke %s --site CODE'\n", key_id);
        return EXIT_USAGE;
    }
    site = scan.sites[chosen];
    if (!strcmp(site, c->conf.site_code) && scan.own_current)
        return ss_err(&e, SS_E_USAGE,
                      "%s is this site's current key; run 'sitespool key rotate' first, then "
                      "revoke the old key",
                      key_id),
               cli_fail(&e);
    /* This site's old key: not while a peer still relies on it (the
     * heartbeats tell), unless --force. */
    if (!strcmp(site, c->conf.site_code)) {
        int guard = links_revoke_guard(c, key_id, force);
        if (guard) return guard;
    }
    ss_keyctx k = keyctx(c);
    if (ss_trust_revoke(&k, site, key_id, &e) != 0) return cli_fail(&e);
    printf("Revoked key %s of site %s\n", key_id, site);
    /* This site's old key: the rollover is over, and a directory server
     * shows the new key alone. */
    if (!strcmp(site, c->conf.site_code) && keydir_is_server(c) && keydir_publish_server(c) != 0) {
        fprintf(stderr, "sitespool: the key is revoked, but the key directory still shows the "
                        "rollover; run 'sitespool key publish' when it answers\n");
        return 1;
    }
    return 0;
}

/* Reads this site's current public key file text. */
static char *own_pubkey_text(cli *c, size_t *len, ss_error *e)
{
    char pk_path[PATH_MAX], *text = NULL;
    ss_own_key_paths(c->root, c->conf.site_code, NULL, pk_path, sizeof pk_path);
    if (ss_read_small_file(AT_FDCWD, pk_path, 4096, &text, len, e) != 0) return NULL;
    return text;
}

int key_publish(cli *c, int argc, char **argv, const char *usage)
{
    (void)argv;
    if (argc != 1) return cli_usage(usage, "publish takes no arguments");
    ss_error e = {0};
    if (!c->conf.directory[0])
        return ss_err(&e, SS_E_CONF,
                      "no key directory: set 'directory = /path' (a folder) or 'directory = "
                      "ldap://HOST/BASE-DN' (a directory server) in site.conf"),
               cli_fail(&e);
    if (keydir_is_server(c)) return keydir_publish_server(c);
    size_t len;
    char *text = own_pubkey_text(c, &len, &e);
    if (!text) return cli_fail(&e);
    ss_pubkey pk;
    char name[32], key_id[SS_KEYID_HEX + 1];
    int rc = ss_pubkey_parse(text, len, &pk, NULL, 0, &e);
    int dfd = rc == 0 ? ss_open_dir(c->conf.directory, &e) : -1;
    snprintf(name, sizeof name, "%s.pub", c->conf.site_code);
    if (dfd >= 0)
        rc = ss_write_file_atomic(dfd, name, text, len, 0644, SS_ATOMIC_SYNC_DIR, &e);
    else
        rc = -1;
    if (dfd >= 0) close(dfd);
    free(text);
    if (rc != 0) return cli_fail(&e);
    ss_keyid_hex(pk.keyid, key_id);
    ss_report(&c->rep, 3311, key_id, c->conf.site_code, c->conf.directory, NULL);
    printf("Published key %s in %s/%s\n", key_id, c->conf.directory, name);
    return 0;
}

/* Queues and delivers in-memory payloads of one type to peers. */
static int send_key_payload(cli *c, ss_sender *s, const char *peer, enum ss_itype type,
                            const char *payload, size_t len, char id_out[SS_ID_HEX + 1])
{
    char name[32];
    snprintf(name, sizeof name, "%s.%s", c->conf.site_code,
             type == SS_TYPE_KEY ? "pub" : "rollover");
    ss_send_item item = {.data = payload, .data_len = len, .name = name, .type = type};
    ss_error e = {0};
    if (ss_sender_pack(s, peer, "hman.box", &item, 1, &e) != 0) return cli_fail(&e);
    memcpy(id_out, item.id, sizeof item.id);
    ss_deliver_result res;
    signal(SIGPIPE, SIG_IGN); /* an SFTP peer dropping the connection fails a write */
    if (ss_sender_deliver(s, peer, &res, &e) != 0) return cli_fail(&e);
    if (res.unreachable) {
        fprintf(stderr, "sitespool: %s is unreachable; the instruction stays queued\n", peer);
        return EXIT_TEMPFAIL;
    }
    return 0;
}

/* The key exchange payload: this site's current public key and a proof of
 * possession signed by its secret half (keyfile.h), which even an unsigned
 * key exchange carries. */
static int own_key_offer(cli *c, char *payload, size_t cap, char key_id[SS_KEYID_HEX + 1],
                         ss_error *e)
{
    size_t len;
    char *text = own_pubkey_text(c, &len, e);
    if (!text) return -1;
    ss_pubkey pk;
    char comment[SS_COMMENT_MAX + 1];
    ss_seckey *sk = NULL;
    int rc = ss_pubkey_parse(text, len, &pk, comment, sizeof comment, e);
    free(text);
    if (rc == 0) rc = ss_own_key_load(c->root, &c->conf, &sk, &pk, e);
    if (rc == 0)
        rc = ss_key_offer_payload(c->conf.site_code, sk, ss_pubkey_comment_not_after(comment),
                                  payload, cap, e);
    ss_seckey_free(sk);
    ss_keyid_hex(pk.keyid, key_id);
    return rc;
}

int key_send_to(cli *c, int argc, char **argv, const char *usage)
{
    bool unsigned_mode = argc == 3 && !strcmp(argv[2], "--unsigned");
    if (argc != 2 && !unsigned_mode) return cli_usage(usage, "send-to needs CODE [--unsigned]");
    const char *peer = argv[1];
    if (!ss_site_code_valid(peer)) return bad_site(usage, peer);
    ss_error e = {0};
    char payload[1024], key_id[SS_KEYID_HEX + 1];
    if (own_key_offer(c, payload, sizeof payload, key_id, &e) != 0) return cli_fail(&e);
    ss_sender s;
    bool sign = !unsigned_mode && c->conf.sign_instructions;
    if (ss_sender_open(&s, c->root, &c->conf, &c->db, &c->rep, sign, &e) != 0) return cli_fail(&e);
    char id[SS_ID_HEX + 1] = "";
    int rc = send_key_payload(c, &s, peer, SS_TYPE_KEY, payload, strlen(payload), id);
    if (rc == 0 || rc == EXIT_TEMPFAIL) {
        ss_report(&c->rep, 3312, key_id, c->conf.site_code, peer, id, NULL);
        printf("Sent key %s to %s%s\n", key_id, peer, sign ? "" : " (unsigned)");
    }
    ss_sender_close(&s);
    return rc;
}

struct rotate_ctx {
    cli *c;
    ss_sender *s;
    const char *payload;
    size_t len;
    int peers;
    int exit_code;
};

static int rotate_peer(void *ctx_, const ss_peer *p)
{
    struct rotate_ctx *ctx = ctx_;
    char id[SS_ID_HEX + 1];
    int rc =
        send_key_payload(ctx->c, ctx->s, p->site, SS_TYPE_ROLLOVER, ctx->payload, ctx->len, id);
    ctx->peers++;
    if (rc != 0 && ctx->exit_code == 0) ctx->exit_code = rc;
    return 0;
}

/* Writes the next key pair beside the current one, under names that
 * carry its key id. */
static int save_next_keys(cli *c, const ss_pubkey *pk, const ss_seckey *sk, int64_t not_after,
                          char *sk_path, char *pk_path, size_t len, ss_error *e)
{
    char id[SS_KEYID_HEX + 1], comment[128], text[512], keys_dir[PATH_MAX], name[64];
    ss_keyid_hex(pk->keyid, id);
    ss_path(keys_dir, sizeof keys_dir, c->root, SS_DIR_KEYS);
    snprintf(sk_path, len, "%s/%s.%s.key", keys_dir, c->conf.site_code, id);
    snprintf(pk_path, len, "%s/%s.%s.pub", keys_dir, c->conf.site_code, id);
    if (ss_seckey_save(sk_path, sk, e) != 0) return -1;
    ss_pubkey_comment(c->conf.site_code, not_after, comment, sizeof comment);
    ss_pubkey_format(pk, comment, text, sizeof text);
    snprintf(name, sizeof name, "%s.%s.pub", c->conf.site_code, id);
    int dfd = ss_open_dir(keys_dir, e);
    if (dfd < 0) return -1;
    int rc = ss_write_file_atomic(dfd, name, text, strlen(text), 0644,
                                  SS_ATOMIC_NOREPLACE | SS_ATOMIC_SYNC_DIR, e);
    close(dfd);
    return rc;
}

/* Makes the next key the current one: the old files are kept with their
 * key id in the name. */
static int swap_current_keys(cli *c, const char *old_id, const char *next_sk, const char *next_pk,
                             ss_error *e)
{
    char cur_sk[PATH_MAX], cur_pk[PATH_MAX], old_sk[PATH_MAX], old_pk[PATH_MAX];
    ss_own_key_paths(c->root, c->conf.site_code, cur_sk, cur_pk, sizeof cur_sk);
    snprintf(old_sk, sizeof old_sk, "%s/" SS_DIR_KEYS "/%s.%s.key.retired", c->root,
             c->conf.site_code, old_id);
    snprintf(old_pk, sizeof old_pk, "%s/" SS_DIR_KEYS "/%s.%s.pub.retired", c->root,
             c->conf.site_code, old_id);
    if (link(cur_sk, old_sk) != 0 || link(cur_pk, old_pk) != 0 || rename(next_sk, cur_sk) != 0 ||
        rename(next_pk, cur_pk) != 0)
        return ss_err_sys(e, "cannot make the new key current in %s/" SS_DIR_KEYS, c->root);
    char keys_dir[PATH_MAX];
    ss_path(keys_dir, sizeof keys_dir, c->root, SS_DIR_KEYS);
    return ss_fsync_dir(keys_dir, e);
}

int key_rotate(cli *c, int argc, char **argv, const char *usage)
{
    (void)argv;
    if (argc != 1) return cli_usage(usage, "rotate takes no arguments");
    ss_error e = {0};
    ss_sender s;
    if (ss_sender_open(&s, c->root, &c->conf, &c->db, &c->rep, true, &e) != 0) return cli_fail(&e);
    ss_pubkey next_pk;
    ss_seckey *next_sk = NULL;
    char old_id[SS_KEYID_HEX + 1], next_id[SS_KEYID_HEX + 1], sk_path[PATH_MAX], pk_path[PATH_MAX],
        payload[1024], count[32];
    int64_t not_after = ss_now() + (int64_t)c->conf.key_lifetime_days * 86400;
    ss_keyid_hex(s.pk.keyid, old_id);
    int rc = ss_keypair_generate(&next_pk, &next_sk, &e);
    if (rc == 0)
        rc = save_next_keys(c, &next_pk, next_sk, not_after, sk_path, pk_path, sizeof sk_path, &e);
    if (rc == 0)
        rc = ss_rollover_payload(c->conf.site_code, &s.pk, next_sk, not_after, payload,
                                 sizeof payload, &e);
    ss_seckey_free(next_sk);
    ss_keyctx k = keyctx(c);
    if (rc == 0) rc = ss_trust_own_add(&k, &next_pk, not_after, "rotate", &e);
    if (rc != 0) {
        ss_sender_close(&s);
        return cli_fail(&e);
    }
    ss_keyid_hex(next_pk.keyid, next_id);
    /* Rollovers are signed by the current key: queue them before the swap. */
    struct rotate_ctx ctx = {c, &s, payload, strlen(payload), 0, 0};
    if (ss_peer_foreach(&c->db, rotate_peer, &ctx, &e) != 0) ctx.exit_code = cli_fail(&e);
    ss_sender_close(&s);
    int64_t grace_until = ss_now() + (int64_t)c->conf.rollover_grace_days * 86400;
    if (swap_current_keys(c, old_id, sk_path, pk_path, &e) != 0 ||
        ss_trust_own_retire(&k, old_id, grace_until, &e) != 0)
        return cli_fail(&e);
    snprintf(count, sizeof count, "%d", ctx.peers);
    ss_report(&c->rep, 3308, c->conf.site_code, old_id, next_id, count, NULL);
    printf("Rotated key %s -> %s; rollover sent to %d peer(s). Give the new keys/%s.pub to "
           "sites that get keys by hand.\n",
           old_id, next_id, ctx.peers, c->conf.site_code);
    /* A directory server shows the new key beside the old one, vouched
     * for by it, so peers find it before the rollover reaches them. */
    if (keydir_is_server(c) && keydir_publish_server(c) != 0) {
        fprintf(stderr, "sitespool: the key is rotated, but the key directory does not show "
                        "the new key yet; run 'sitespool key publish' when it answers\n");
        if (ctx.exit_code == 0) ctx.exit_code = 1;
    }
    return ctx.exit_code;
}
