/* main.c - the legodnn command (placeholder until the CLI lands). */
#include <stdio.h>

#include "legodnn.h"

int main(void)
{
    printf("legodnn %s\n", LEGO_VERSION);
    return 0;
}
