/*
 * catalogue.c - every status message sitespool can raise, defined once.
 *
 * Ranges: despooler 4400-4499 (4400, 4404 and 4405 keep the meanings of
 * the ConfigMgr SMS_DESPOOLER messages), sender 4500-4599, hierarchy
 * manager (keys and trust) 3300-3399.  The README's table is generated from
 * `sitespool status --catalogue --markdown` and a test keeps the two equal.
 */
#include "status.h"

#define D SS_COMP_DESPOOLER
#define S SS_COMP_SENDER
#define H SS_COMP_HMAN

static const ss_msgdef catalogue[] = {
    /* ---- hierarchy manager: keys and trust ---- */
    {3300, 'I', H, "Imported public key %1 for site %2 from %3.",
     "A public key file was imported into the keystore and is trusted for that site.",
     "None. Check that the key id matches the one the other site's administrator announced."},
    {3301, 'E', H, "Could not import key file %1: %2",
     "A file in hman.box (or given to 'key import') was refused: it is not a valid public key; "
     "its file name and its comment name different sites (or its comment names none); the key "
     "is revoked; the same public key is already trusted for another site; or the site has a "
     "different key under the same key id. A file in hman.box was renamed with the suffix .bad "
     "and is not used.",
     "Ask the other site's administrator for a fresh 'sitespool key export' file and drop it "
     "into hman.box again. If you know which site the file is for: 'sitespool key import FILE "
     "--site CODE' (and --shared-key if two sites really share one key pair)."},
    {3302, 'I', H, "Created key pair %1 for site %2, valid until %3.",
     "A new signing key pair was made for this site.",
     "Send the public key to every peer ('sitespool key export', then drop it into the "
     "peer's hman.box)."},
    {3303, 'E', H,
     "Site %1 presented a different key %2 (%4), but this site trusts key(s) %3 for it and "
     "neither a rollover nor an administrator vouched for the new key. Site %1 is blocked: its "
     "data is held until an administrator decides.",
     "A different key for a trusted site was presented and verified (the Ivanti rule: a "
     "changed certificate blocks synchronisation): a key exchange signed by the new key with "
     "its proof of possession (only with require_secure_key_exchange = no), a key directory "
     "record that differs from the trusted key, or a rollover signed by the trusted key whose "
     "new key failed its checks. An instruction merely signed under an unknown key id never "
     "blocks a site (that is 4405). The site's data stays in the receive inbox.",
     "Check with the other site's administrator. If the new key is genuine: 'sitespool key "
     "trust SITE KEYID' (or drop its .pub into hman.box); if not: 'sitespool key revoke KEYID "
     "--site SITE' refuses it for good and lifts the block; 'sitespool key untrust SITE' "
     "removes trust altogether."},
    {3304, 'W', H, "Key %1 of site %2 expires on %3 (%4 days left).",
     "A key nears the end of its validity (expiry_warning_days before; repeated daily).",
     "For this site's own key run 'sitespool key rotate' (peers keep accepting the old key "
     "for rollover_grace_days); for a peer's key ask its administrator to rotate."},
    {3305, 'W', H,
     "Site %1 offered key %2 in an unauthenticated key exchange; it waits for "
     "approval ('sitespool key approve %1 %2').",
     "Trust on first use needs an administrator's consent (require_secure_key_exchange = no, "
     "tofu_auto_approve = no). Data from the site is held meanwhile.",
     "Confirm the key id with the other site's administrator, then approve it."},
    {3306, 'I', H,
     "Key %2 of site %1 is trusted by an administrator's decision (%3); held data "
     "is released.",
     "'key import', a key dropped into hman.box, 'key approve' or 'key trust' made a key the "
     "keystore already knew (pending, or the one that blocked the site) trusted.",
     "None."},
    {3307, 'W', H,
     "Trust in site %1 was removed (%2 key(s) forgotten); its data now waits as for "
     "an unknown site.",
     "'sitespool key untrust' was run.", "Exchange keys again when the site should be trusted."},
    {3308, 'I', H,
     "Rotated the key of site %1 from %2 to %3; rollover instructions queued for %4 "
     "peer(s).",
     "A new key pair signs from now on; peers accept the old key for their rollover_grace_days.",
     "Watch 'sitespool key list' until every peer was last seen after the rotation; then the "
     "old key can be revoked."},
    {3309, 'I', H,
     "Site %1 rolled its key over from %2 to %3; the old key stays accepted until "
     "%4.",
     "A rollover signed by the trusted key, with proof of the new key, was accepted.", "None."},
    {3310, 'W', H, "Key %1 of site %2 was revoked; it is never accepted again.",
     "'sitespool key revoke' was run. A revoked public key is revoked for every site that held "
     "it (one message each); a block it caused is lifted.",
     "None."},
    {3311, 'I', H, "Published key %1 of site %2 in the key directory %3.",
     "'sitespool key publish' (or 'key rotate', or 'key revoke' of this site's old key) wrote "
     "the site's public key record into the key directory: <SITE>.pub in a folder, or the "
     "site's entry on a directory server.",
     "None."},
    {3312, 'I', H, "Sent key %1 of site %2 to site %3 (key exchange instruction %4).",
     "'sitespool key send-to' queued a key exchange instruction.", "None."},
    {3313, 'I', H, "Key %2 of site %1 is now trusted: %3 vouched for it; held data is released.",
     "A key exchange signed by a key this site already trusts for the sender (with the new "
     "key's proof of possession), or a rollover, made a known key trusted - for example the "
     "one whose offer had blocked the site.",
     "None."},
    {3314, 'I', H,
     "Every peer heard from within the grace period holds key %1 of this site: the old key %2 "
     "can be revoked ('sitespool key revoke %2').",
     "After 'key rotate', each peer's heartbeats tell which of this site's keys it trusts. The "
     "last peer heard from within rollover_grace_days now holds the new key (the ESET "
     "rule: revoke the old certificate only when every agent has the new one).",
     "Revoke the old key when convenient; 'sitespool key propagation' shows each peer."},
    /* ---- despooler ---- */
    {4400, 'I', D, "Despooler stored package %1 from site %2 in %3.",
     "An instruction and its package were verified, decompressed and delivered; for a bundle "
     "(files=), one message per file, %1 being <instruction id>#<member number>.",
     "None."},
    {4401, 'I', D, "Despooler started for site %1 (watching %2).",
     "The despooler daemon started and scanned its receive inbox.", "None."},
    {4402, 'W', D,
     "Instruction %1 from site %2 was already processed on %3; this copy was "
     "removed and not delivered again.",
     "The same instruction id arrived twice (a resend or a replay). Delivery is exactly once. "
     "A sender whose connection broke after its last files were renamed into place, but "
     "before it could confirm that they reached the disk, sends them again: expected after "
     "such a break.",
     "None, unless it repeats without connection failures at the sender (4501, 4510 there); "
     "then check its outbox handling."},
    {4403, 'E', D,
     "Instruction file %1 could not be read: %2. The files were moved to "
     "despoolr.box/rejected.",
     "The instruction is malformed, truncated, not a regular file, or not a sitespool "
     "instruction. A file this site cannot read (permissions, an I/O error, no file "
     "descriptors or memory left) is not judged by its content and not moved: that is 4419.",
     "Read the .why file next to it in despoolr.box/rejected; ask the sending site to resend."},
    {4404, 'E', D,
     "Despooler received an instruction and package %1 from site %2 but did not "
     "process them because they are not signed (a key exchange: not signed by a key this site "
     "trusts for that site) and this site requires secure key exchange.",
     "The instruction is unsigned, or it is a key exchange not signed by a key this site "
     "already trusts for the sender, while require_secure_key_exchange = yes. The files were "
     "moved to despoolr.box/rejected; nothing about the site's keys changed.",
     "Make the sending site sign its instructions (sign_instructions = yes) and exchange public "
     "keys manually; or, on a trusted network only, set require_secure_key_exchange = no."},
    {4405, 'W', D,
     "Despooler received instruction %1 with replication data from site %2 but "
     "did not process it because no valid public key (id %3) for that site was found. It will "
     "retry %4 more times, next retry in about %6.",
     "The sending site's public key with that id is not in the keystore, the key directory or "
     "hman.box. The files stay in despoolr.box/receive and the lookup is retried. An unknown "
     "key id never changes what this site trusts: a forged instruction ends here (4406 when "
     "the retries run out), and the site's data under its trusted keys keeps flowing.",
     "Get the sending site's public key ('sitespool key export' there) and drop it into this "
     "site's inboxes/hman.box; waiting instructions are retried at once."},
    {4406, 'E', D,
     "Gave up looking for the public key (id %3) of site %2 for instruction %1 "
     "after %4 attempts; the files were moved to despoolr.box/rejected.",
     "The key lookup retries (key_lookup_retries) ran out. Nothing was deleted.",
     "Exchange keys, then 'sitespool release %1' moves the pair from despoolr.box/rejected "
     "back into despoolr.box/receive (package first)."},
    {4407, 'E', D,
     "Instruction %1 from site %2 failed verification with key %3: %4. The files "
     "were moved to despoolr.box/rejected.",
     "The signature does not match the package or the instruction fields: the files were "
     "forged or damaged in transit.",
     "Ask the sending site to resend; if it recurs, suspect the link or a forger."},
    {4408, 'E', D,
     "Instruction %1 from site %2 is addressed to site %3, not to this site; it "
     "was moved to despoolr.box/rejected.",
     "A peer delivered into the wrong site's inbox.",
     "Fix the peer address on the sending site ('sitespool peer add')."},
    {4409, 'W', D,
     "Instruction %1 from site %2 expired at %3; it was moved to "
     "despoolr.box/rejected and not delivered.",
     "The instruction's expires time passed before it could be processed (or it is a replay). "
     "Expiry is judged by the latest time this site's clock has shown, so that after the clock "
     "was set back no replay can slip past a pruned ledger.",
     "Ask the sending site to resend the data if it is still needed."},
    {4410, 'E', D,
     "Instruction %1 from site %2 names destination %3, which this site does not "
     "allow; it was moved to despoolr.box/rejected.",
     "Only inboxes listed in allowed_dest receive data.",
     "Add the inbox to allowed_dest in site.conf if it should receive data."},
    {4411, 'E', D,
     "File %1 in the receive inbox is not a regular file (%2); it was moved to "
     "despoolr.box/rejected.",
     "Symbolic links, fifos, devices, directories and files with more than one hard link "
     "(which could be a file outside the inbox) are never followed or read.",
     "Find out who placed it there; peers must write regular files."},
    {4412, 'E', D,
     "Package %1 from site %2 is too large (%3 bytes; max_package_bytes is %4); "
     "it was moved to despoolr.box/rejected.",
     "The package file or its declared size is over the limit.",
     "Raise max_package_bytes if such packages are expected."},
    {4413, 'E', D,
     "Package %1 from site %2 could not be unpacked: %3. Nothing was delivered; "
     "the files were moved to despoolr.box/rejected.",
     "The verified package is not a valid compressed stream or does not expand to exactly its "
     "declared size (a decompression bomb is stopped at the declared size).",
     "Ask the sending site to resend; report it if it recurs."},
    {4414, 'W', D, "%1 has waited in the receive inbox for %2 hours (%3).",
     "A file has been waiting longer than backlog_warning_age: its package or key has not "
     "arrived. It is kept, never deleted.",
     "Check the sending site's sender.log and the link; see the other status messages for this "
     "instruction."},
    {4415, 'W', D,
     "Instruction %1 from site %2 has sequence number %3; numbers %4 to %5 from "
     "that site have not been seen.",
     "Instructions from a site are numbered; a gap means some were lost or are still on the "
     "way.",
     "Check the sending site's outbox and sender.log."},
    {4416, 'E', D,
     "Could not deliver package %1 from site %2 into %3: %4. The files stay in "
     "the receive inbox and will be retried.",
     "Writing into the destination inbox failed (disk full, permissions).",
     "Fix the destination folder; the despooler retries at its next scan."},
    {4417, 'I', D, "Found the public key of site %1; retrying %2 waiting instruction(s) now.",
     "A key for a site with waiting instructions arrived: dropped into hman.box, found in the "
     "key directory, or trusted by a command ('key import', 'key approve', 'key trust'), "
     "which wakes a running despooler within a second.",
     "None."},
    {4418, 'I', D, "Despooler for site %1 stopped.", "The despooler daemon stopped cleanly.",
     "None."},
    {4419, 'E', D,
     "The despooler cannot read %1 in the receive inbox: %2. It runs as %3; the file is owned "
     "by %4 with mode %5. The pair stays in the receive inbox and is retried at every scan.",
     "A local fault, not the sending site's: the despooler's user may not read the file (its "
     "mode, owner, group or ACL), the disk returned an I/O error, or the process ran out of "
     "file descriptors or memory. Nothing was moved or quarantined. The message is raised "
     "once per file and cause; when the file can be read, the pair is processed as usual.",
     "Make the files of despoolr.box/receive readable by the despooler's user: peers that "
     "write as other users write as members of its group with mode 0640 into a receive "
     "folder of that group with the setgid bit (chgrp sitespool receive; chmod 2770 receive), "
     "or a default ACL grants it (setfacl -d -m u:sitespool:r receive). For this pair: chgrp "
     "or chmod g+r the file. An I/O error: check the disk (dmesg); no descriptors: raise "
     "LimitNOFILE."},
    {4420, 'W', D, "Instruction %1 from site %2 is held: %3. It stays in the receive inbox.",
     "The instruction verified with a key the keystore holds, but cannot be processed until "
     "an administrator acts: its site is blocked after a verified key change, its key waits "
     "for approval, or its key expired. Nothing is lost; this message is raised once per "
     "instruction and reason.",
     "See the hman status messages for the site: 'sitespool key approve', 'key trust' or "
     "'key untrust' decide; an expired key needs the sending site to rotate its key."},
    {4421, 'E', D,
     "Instruction %1 from site %2 is signed with revoked key %3; it was moved to "
     "despoolr.box/rejected.",
     "A revoked key is never accepted again, whatever else is true of the instruction.",
     "If the data is still needed, ask the sending site to resend it signed with its current "
     "key."},
    {4422, 'E', D,
     "Key exchange %1 from site %2 was not accepted: %3. It was moved to "
     "despoolr.box/rejected.",
     "A key exchange or rollover instruction failed a check of its own: a missing or forged "
     "proof of possession of the offered key, a payload that is not a public key for the "
     "sending site, a key that belongs to another site or clashes with a key id the site "
     "already has, or a rollover not signed by the site's current trusted key (a retired key "
     "never vouches for a key). A rollover signed by the trusted key whose new key fails its "
     "checks also blocks the site (3303).",
     "Exchange the key manually: 'sitespool key export' at the sending site, then drop the file "
     "into this site's inboxes/hman.box."},
    {4423, 'E', D,
     "The despooler could not finish a scan of %1: %2. It keeps running and tries again in "
     "%3 seconds.",
     "Something outside the despooler failed (site.db locked by another program for longer "
     "than its busy timeout, no file descriptors or memory left, a folder gone). Pairs stay "
     "in the receive inbox; nothing is lost. Further failures in a row are only logged.",
     "If it repeats, read despool.log and check the named folder, the disk and which program "
     "holds site.db ('fuser site.db')."},
    {4424, 'E', D,
     "Instruction %1 from site %2 was created at %3, %4 seconds ahead of this site's clock "
     "(max_clock_skew is %5 seconds); it was moved to despoolr.box/rejected.",
     "An instruction cannot have been made in the future: the sending site's clock (or this "
     "site's) is wrong, or the instruction is forged or replayed with altered times.",
     "Check both sites' clocks (NTP). If the data is needed, have the sending site resend it "
     "once its clock is right."},
    {4425, 'E', D,
     "Instruction %1 from site %2 expires at %3, further ahead than max_package_lifetime (%4 "
     "seconds) allows; it was moved to despoolr.box/rejected.",
     "Every delivered instruction id is kept in the ledger until it expires, to refuse "
     "replays; an instruction that claims to live for decades would keep its ledger row "
     "forever.",
     "Lower package_lifetime at the sending site, or raise max_package_lifetime here."},
    {4426, 'E', D,
     "Instruction %1 from site %2 was refused (status %3: %4) but could not be moved to "
     "despoolr.box/rejected: %5. Both files stay in the receive inbox; the despooler tries again.",
     "Quarantine moves the instruction and its package together or not at all (a full disk or "
     "a read-only folder stops it); nothing was delivered.",
     "Free space in (or fix the permissions of) despoolr.box/rejected; the pair is quarantined "
     "at the next scan."},
    {4427, 'E', D,
     "Bundle %1 from site %2 (%3 files) was refused: %4. None of its files was delivered; "
     "the pair was moved to despoolr.box/rejected.",
     "A bundle (files=) carries several files in one tar stream; each must be a regular file "
     "with a plain name (as name= of a single file), no two with one name, and the count must "
     "be the declared one. The signature verified, so the sending site made it so: a bug or a "
     "tampered sender, not the link.",
     "The pair is in despoolr.box/rejected: its package is a zlib stream of a tar file (inflate "
     "it with any zlib tool, then 'tar tvf' lists it). Report it to the sending site; "
     "bundle_max_files = 1 there sends files one by one meanwhile."},
    {4428, 'I', D,
     "Instruction %1 from site %2, quarantined with status %3, was moved back into the receive "
     "inbox by %4; the despooler processes it at its next scan.",
     "An administrator released a quarantined pair ('sitespool release') after fixing its "
     "cause: its package, then its instruction, were moved from despoolr.box/rejected into "
     "despoolr.box/receive (never replacing a file there) and its .why file was removed. The "
     "pair is judged afresh, like any arrival: delivered if it passes now, kept if its key is "
     "still missing, or quarantined again with a new status message.",
     "None. A running despooler sees the pair at once (inotify), or at its next rescan "
     "(rescan_interval) where inotify cannot see; 'sitespool despool --once' processes it "
     "now."},
    {4429, 'W', D,
     "Instruction %1 (%2) from site %3, %4, was deleted by %5; nothing of it was delivered.",
     "An administrator deleted a quarantined or held pair ('sitespool delete'): its "
     "instruction, package and .why file are gone. Only pairs in despoolr.box/rejected, and "
     "pairs held in the receive inbox until an administrator acts (4420, 4416, 4419, 4426), can be "
     "deleted; a pair the despooler may still be working on (waiting for its key, or not "
     "judged yet) is refused.",
     "None if the data was unwanted; otherwise ask the sending site to send it again."},
    {4440, 'E', D,
     "Instruction %1 from site %2 is a %3 whose content cannot be read: %4. The files were moved "
     "to despoolr.box/rejected.",
     "A receipt or heartbeat signed by a key trusted for the sending site does not follow the "
     "format (a first line naming sitespool-receipt/1 or sitespool-heartbeat/1 with the "
     "instruction's own from and to, then one fact per line). Nothing of it was believed.",
     "Ask the sending site's administrator which sitespool version it runs; its later "
     "receipts and heartbeats are judged afresh."},
    {4441, 'W', D,
     "The key directory %1 could not be searched for the key of site %2: %3. Pairs waiting "
     "for a key stay in receive and the search is retried at the next rescan.",
     "The directory server did not answer within directory_timeout, refused the connection, "
     "failed the TLS handshake (its certificate does not verify against directory_ca_file or "
     "does not name the host) or returned an LDAP error. Pairs whose key is not in the "
     "keystore wait as for a missing key (4405), and while the directory cannot be asked "
     "their lookups do not run out: nothing is quarantined for a directory fault. Raised once "
     "per outage; each failed attempt is logged in despool.log. The directory is asked again "
     "once per rescan_interval, never once per pair.",
     "Check that the server runs and answers from this host ('ldapsearch -x -H URL -b "
     "BASE-DN'), the CA file and the server's certificate, and despool.log. Delivery resumes "
     "by itself when it answers (4443)."},
    {4442, 'E', D, "The key directory %1 refused the bind as %2 (password file %3): %4.",
     "The bind DN or its password is wrong, the password file is missing, unreadable, "
     "readable by group or others or owned by another user, or the server refuses simple "
     "binds on this connection (it may require StartTLS: directory_starttls = yes). Pairs "
     "whose key is not in the keystore wait as for a missing key (4405); nothing is "
     "quarantined. Raised once per outage.",
     "Fix directory_bind_dn or the password file (the password alone on one line, 'chmod 600 "
     "FILE', owned by the user running sitespool) and test the pair with 'ldapwhoami -x -H "
     "URL -D DN -y FILE'. Delivery resumes by itself (4443) at the next rescan."},
    {4443, 'I', D, "The key directory %1 answers again.",
     "A search succeeded after the directory could not be searched (4441) or refused the bind "
     "(4442). Waiting pairs find their keys there from now on.",
     "None."},
    {4444, 'E', D,
     "Instruction %1 from site %2 is sealed to key %3, %4. Nothing was decrypted; the files "
     "were moved to despoolr.box/rejected.",
     "A sealed instruction (enc=) verified, but this site does not open it: the key it is "
     "sealed to is not one of this site's keys, or this site revoked it, or retired it by 'key "
     "rotate' and its grace period (rollover_grace_days) has ended; or it is a key, rollover, "
     "receipt or heartbeat instruction, which are never sealed. A package is opened with this "
     "site's current key or a retired one within its grace period, never a revoked one.",
     "The sending site seals to the newest key of this site it trusts: give it this site's "
     "current key ('sitespool key export', or 'key send-to SITE'), then ask it to resend. The "
     "pair is in despoolr.box/rejected; 'sitespool release' brings it back if this site's key "
     "state was wrong."},
    {4445, 'E', D,
     "Could not open %1 from site %2: %3. Nothing was decrypted or delivered; the files were "
     "moved to despoolr.box/rejected.",
     "The header of a sealed package (its first 72 bytes: the SSSEAL01 magic, the key id it "
     "is sealed to, an ephemeral public key and the stream header) is not the one its signed "
     "instruction pins (seal=, the header's BLAKE2b-256), or not valid: not a sealed package, "
     "sealed to another key than its instruction's enc= names, or an unusable ephemeral key. "
     "No key was derived and nothing decrypted. The signature over the whole package "
     "verified too, so the sending site made it so (a bug, or a tampered sender).",
     "Report it to the sending site with the pair from despoolr.box/rejected; ask it to "
     "resend."},
    {4446, 'E', D,
     "Could not open %1 from site %2: %3. Nothing was delivered; the files were moved to "
     "despoolr.box/rejected.",
     "A chunk of a sealed package does not authenticate (Poly1305): it was changed, chunks "
     "were swapped or reordered, or taken from another package. The signature over the "
     "package verified as well (a changed package is 4407), so the bytes are the ones the "
     "sending site signed: it made them so, or its signing key is in other hands. Each chunk "
     "is authenticated before it is decrypted and plaintext is only used once its chunk "
     "authenticated; the temporary output was removed.",
     "Report it to the sending site's administrator; if it recurs, suspect its host or key "
     "('sitespool key revoke' if the key may be stolen)."},
    {4447, 'E', D,
     "Could not open %1 from site %2: %3. Nothing was delivered; the files were moved to "
     "despoolr.box/rejected.",
     "A sealed package ends before its final chunk (a truncated stream), or it is shorter "
     "than the sealed length its instruction declares (size=). A stream is only complete "
     "with its final chunk, whose tag is authenticated; the temporary output was removed.",
     "Ask the sending site to resend; if it recurs, check the link (a copy cut short)."},
    {4448, 'E', D,
     "Could not open %1 from site %2: %3. Nothing was delivered; the files were moved to "
     "despoolr.box/rejected.",
     "A sealed package is longer than the sealed length its instruction declares (size=), or "
     "bytes follow its final chunk. Nothing after the final chunk is ever used; the temporary "
     "output was removed.",
     "Ask the sending site to resend; report it if it recurs."},
    {4449, 'E', D,
     "Could not open %1 from site %2: its metadata is not valid: %3. Nothing was delivered; "
     "the files were moved to despoolr.box/rejected.",
     "The first line of a sealed package's plaintext names the file, its size, compression "
     "and number of files ('sitespool-sealed/1 name=... size=... zip=...[ files=...]'); it "
     "authenticated but does not follow that form or the rules of an instruction's fields. "
     "Nothing of the payload was used.",
     "Ask the sending site's administrator which sitespool version it runs; report it."},
    /* ---- sender ---- */
    {4500, 'I', S, "Sender delivered package %1 (%2) to site %3.",
     "The package and its instruction were written into the peer's receive inbox.", "None."},
    {4501, 'W', S,
     "Sender could not reach site %1 at %2: %3. %4 package(s) stay queued in the "
     "outbox; next retry in about %6.",
     "The peer's receive inbox is missing, read-only or full. Nothing is dropped.",
     "Check the peer address ('sitespool peer list') and the mount or link."},
    {4502, 'I', S, "Sender reached site %1 again and delivered %2 queued package(s).",
     "A peer that was unreachable accepts deliveries again.", "None."},
    {4503, 'W', S, "Sender queued package %1 for site %2 without a signature.",
     "--unsigned (or sign_instructions = no) was used. A peer that requires secure key "
     "exchange rejects it with 4404.",
     "Sign instructions unless the peer expects unsigned data."},
    {4504, 'I', S, "Sender queued package %1 (%2, %3 bytes) for site %4.",
     "A file, or a bundle of small files (files=), was compressed, signed and put into the "
     "outbox.",
     "None."},
    {4505, 'E', S, "Sender could not package %1 for site %2: %3",
     "Reading, compressing or signing the file failed; nothing was queued for it.",
     "Fix the cause named in the message and send again."},
    {4506, 'E', S,
     "Queued instruction %1 for site %2 has lost its package; it was moved to %3 "
     "and will not be sent.",
     "A package file vanished from the outbox (removed by hand, or a damaged disk). The "
     "instruction alone cannot be delivered, and it must not block the rest of the queue.",
     "Send the data again; remove the instruction from schedule.box/broken when done."},
    {4507, 'E', S,
     "Sender did not deliver to site %1 at %2: the SSH server offered host key %3, which is "
     "not pinned for it. Nothing was sent; the pairs stay queued. If the peer's administrator "
     "confirms that fingerprint: sitespool peer trust-host %1 %3",
     "The first connection to an SFTP address, or a new address: sitespool never accepts a "
     "host key silently. The key offered was recorded.",
     "Compare %3 with the fingerprint the peer's administrator reads with 'ssh-keygen -lf "
     "/etc/ssh/ssh_host_ed25519_key.pub'. If they match: 'sitespool peer trust-host %1 %3'."},
    {4508, 'E', S,
     "Sender did not deliver to site %1 at %2: the SSH server offered host key %3, but key %4 "
     "is pinned for it. Delivery through this address is blocked; the pairs stay queued. "
     "Only if the peer's administrator confirms that the key was changed to %3: sitespool "
     "peer trust-host %1 %3",
     "The server's host key differs from the one pinned for it (in the site's known_hosts, "
     "or given with peer add --host-key): the server was reinstalled or its key replaced - "
     "or someone is in between (a man in the middle).",
     "Ask the peer's administrator whether the host key was changed and for its fingerprint. "
     "Only if it matches %3: 'sitespool peer trust-host %1 %3' (it replaces %4)."},
    {4509, 'W', S,
     "The SFTP server of site %1 at %2 does not offer fsync@openssh.com: delivered files are "
     "renamed into place without being flushed to its disk first.",
     "Without the extension, a power loss at the peer shortly after a delivery can lose a "
     "package the sender has already removed from its outbox.",
     "Use OpenSSH's sftp-server (or internal-sftp) at the peer, which offers the extension."},
    {4510, 'W', S, "Sender skipped address %2 of site %1: %3. Trying %4 next.",
     "One of a peer's addresses could not be used; the pairs go through the next one.",
     "Check that address ('sitespool peer list' shows the state and last error of each)."},
    {4511, 'I', S, "Pinned SSH host key %1 for %2 of site %3 (%4).",
     "An administrator pinned an SFTP server's host key ('peer trust-host' or 'peer add "
     "--host-key'), or the first connection met a fingerprint pinned in advance; it is now in "
     "the site's keys/known_hosts.",
     "None."},
    {4512, 'W', S,
     "%1 pair(s) sent to site %2 have had no receipt for %3; the oldest, %4 (instruction %5), "
     "reached its inbox at %6.",
     "A receiving despooler returns a signed receipt for every instruction once it is "
     "delivered, refused, waiting or held. None came within receipt_timeout: the peer's "
     "despooler or sender is not running, its receipts wait for an address of this site, or "
     "the link is down. Raised once per pair.",
     "'sitespool queue' lists the pairs and 'peer list' the link's state; ask the peer's "
     "administrator to check its daemons ('sitespool -C SITE status'). A lost receipt never "
     "resends anything; 'sitespool send --resend ID' does, and the peer's ledger keeps it "
     "exactly once."},
    {4513, 'E', S, "Site %1 quarantined %2 (instruction %3): its status %4.",
     "The receipt of the peer says its despooler refused the pair and moved it to its "
     "despoolr.box/rejected, with that status message (see the catalogue).",
     "Ask the peer's administrator: 'sitespool status --id N' there explains it. Once the "
     "cause is fixed, the peer releases the pair ('sitespool release ID') or this site "
     "resends it ('sitespool send --resend ID')."},
    {4514, 'W', S, "Site %1 has not delivered %2 (instruction %3): %4 (its status %5).",
     "The receipt of the peer says the pair waits there: for this site's public key (4405), "
     "or held for its administrator (a blocked site, a destination it cannot write).",
     "Waiting for a key: send it ('sitespool key send-to SITE' or give the peer the exported "
     "key file). Held: ask the peer's administrator."},
    {4515, 'W', S,
     "The link to site %1 is degraded: nothing heard from it for %2 (%3 heartbeat intervals); "
     "last heard %4.",
     "Each site sends its peers a signed heartbeat every heartbeat_interval, and receipts "
     "after each batch. None came from that site for link_degraded_after intervals (after "
     "twice as many the link counts as failed, 4516).",
     "Check the peer's sender daemon and its address for this site; 'sitespool peer list' "
     "shows each link."},
    {4516, 'E', S,
     "The link to site %1 has failed: nothing heard from it for %2 (%3 heartbeat intervals); "
     "last heard %4.",
     "No heartbeat or receipt came from that site for twice link_degraded_after heartbeat "
     "intervals. What this site sends it may be piling up unconfirmed.",
     "Reach the peer's administrator; meanwhile nothing is lost: pairs stay queued or wait "
     "for their receipts."},
    {4517, 'I', S, "The link to site %1 is healthy again: heard from it at %2.",
     "A heartbeat or receipt arrived from a site whose link was degraded or failed.", "None."},
    {4518, 'I', S, "Resent instruction %1 (%2) to site %3 at the request of %4.",
     "An administrator queued a sent pair again ('send --resend'): the same instruction, the "
     "same id, so the peer's ledger delivers it at most once.",
     "None."},
};

const ss_msgdef *ss_catalogue(size_t *count)
{
    *count = sizeof catalogue / sizeof catalogue[0];
    return catalogue;
}

const ss_msgdef *ss_msgdef_find(int id)
{
    for (size_t i = 0; i < sizeof catalogue / sizeof catalogue[0]; i++)
        if (catalogue[i].id == id) return &catalogue[i];
    return NULL;
}
