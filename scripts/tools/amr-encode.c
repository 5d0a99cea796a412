/* Encodes raw 16-bit mono PCM from stdin into an .amr file on stdout, for the
 * test fixtures: Debian's ffmpeg decodes AMR but encodes none.
 *   amr-encode nb < 8kHz.s16 > speech.amr      (AMR-NB 12.2 kbit/s)
 *   amr-encode wb < 16kHz.s16 > speech-wb.amr  (AMR-WB 23.85 kbit/s)
 * Built by scripts/make-fixtures.sh against opencore-amrnb and vo-amrwbenc. */
#include <stdio.h>
#include <string.h>
#include <opencore-amrnb/interf_enc.h>
#include <vo-amrwbenc/enc_if.h>

int main(int argc, char **argv) {
    int wide = argc == 2 && strcmp(argv[1], "wb") == 0;
    if (argc != 2 || (!wide && strcmp(argv[1], "nb") != 0)) {
        fprintf(stderr, "usage: amr-encode nb|wb < pcm > out.amr\n");
        return 2;
    }
    size_t samples = wide ? 320 : 160;
    short pcm[320];
    unsigned char frame[64];
    void *state = wide ? E_IF_init() : Encoder_Interface_init(0);
    if (!state) return 1;
    fputs(wide ? "#!AMR-WB\n" : "#!AMR\n", stdout);
    size_t got;
    while ((got = fread(pcm, sizeof(short), samples, stdin)) > 0) {
        memset(pcm + got, 0, (samples - got) * sizeof(short));
        int n = wide ? E_IF_encode(state, 8, pcm, frame, 0)
                     : Encoder_Interface_Encode(state, MR122, pcm, frame, 0);
        if (n < 0 || fwrite(frame, 1, (size_t)n, stdout) != (size_t)n) return 1;
    }
    if (wide) E_IF_exit(state); else Encoder_Interface_exit(state);
    return fflush(stdout) == 0 ? 0 : 1;
}
