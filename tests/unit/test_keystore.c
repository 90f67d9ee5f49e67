/*
 * test_keystore.c - CUnit suite for the keystore library.
 */
#include "testutil.h"

#include <stdlib.h>

static void test_placeholder_site(void)
{
    char *dir = tu_tempdir("keystore");
    tu_site s;
    tu_site_make(&s, dir, "PS1", NULL);
    CU_ASSERT_EQUAL(ss_db_schema_version(&s.db), SS_DB_SCHEMA_VERSION);
    tu_site_close(&s);
    tu_rm_rf(dir);
    free(dir);
}

int main(void)
{
    static const tu_test tests[] = {
        {"a site can be made", test_placeholder_site},
    };
    return tu_run("keystore", tests, sizeof tests / sizeof tests[0]);
}
