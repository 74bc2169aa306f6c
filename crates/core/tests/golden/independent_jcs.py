"""An RFC 8785 (JCS) implementation independent of the Rust code, which builds the golden outputs
from decision.json. Standard library only.

    python3 independent_jcs.py <golden dir> <output dir>

reads <golden dir>/decision.json and writes every output file (and record.json) to <output dir>;
compare them with the committed files (e.g. `diff -r`). See README.md: the committed outputs
must never change without a record version bump.
"""
import base64, hashlib, json, sys

def no_dups(pairs):
    d = {}
    for k, v in pairs:
        assert k not in d, k
        d[k] = v
    return d

def es_number(x):
    x = float(x)
    assert x == x and abs(x) != float('inf')
    if x == 0:
        return "0"
    if x < 0:
        return "-" + es_number(-x)
    r = repr(x)
    mant, _, exp = r.partition('e')
    exp = int(exp) if exp else 0
    if '.' in mant:
        ip, fp = mant.split('.')
    else:
        ip, fp = mant, ''
    digits = ip + fp
    n = len(ip) + exp          # decimal point after n digits
    stripped = digits.lstrip('0')
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip('0')
    k = len(digits)
    # ECMAScript Number::toString, steps for k digits and point position n
    if k <= n <= 21:
        return digits + '0' * (n - k)
    if 0 < n <= 21:
        return digits[:n] + '.' + digits[n:]
    if -6 < n <= 0:
        return '0.' + '0' * (-n) + digits
    e = n - 1
    es = ('+' if e >= 0 else '-') + str(abs(e))
    if k == 1:
        return digits + 'e' + es
    return digits[0] + '.' + digits[1:] + 'e' + es

def jcs(v):
    if v is None: return 'null'
    if v is True: return 'true'
    if v is False: return 'false'
    if isinstance(v, (int, float)): return es_number(v)
    if isinstance(v, str): return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list): return '[' + ','.join(jcs(x) for x in v) + ']'
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: kv[0].encode('utf-16-be'))
        return '{' + ','.join(json.dumps(k, ensure_ascii=False) + ':' + jcs(x) for k, x in items) + '}'
    raise TypeError(v)

def key_id(alg, pk):
    return hashlib.sha256(b"triplicate/key/v1\n" + alg.encode() + b"\n" + pk).hexdigest()[:16]

if __name__ == '__main__':
    # Self-check against RFC 8785 Appendix B / 3.2.2.3 examples.
    for x, want in [(333333333.33333329, '333333333.3333333'), (1e30, '1e+30'), (4.50, '4.5'),
                    (2e-3, '0.002'), (1e-27, '1e-27'), (1e-7, '1e-7'), (1e-6, '0.000001'),
                    (9007199254740992, '9007199254740992'), (1e21, '1e+21'), (1e20, '100000000000000000000'),
                    (-0.0, '0'), (5e-324, '5e-324'), (1.7976931348623157e308, '1.7976931348623157e+308'),
                    (295147905179352830000, '295147905179352830000')]:
        assert es_number(x) == want, (x, es_number(x), want)
    d, out = sys.argv[1], sys.argv[2]
    dec_text = open(d + '/decision.json', encoding='utf-8').read()
    dec = json.loads(dec_text, object_pairs_hook=no_dups)
    dec_jcs = jcs(dec).encode()
    open(out + '/decision.jcs', 'wb').write(dec_jcs)
    digest = hashlib.sha256(b"triplicate/decision/v1\n" + dec_jcs).hexdigest()
    open(out + '/decision.digest.hex', 'w').write(digest)
    ka = key_id('ed25519', bytes([1] * 32))
    kb = key_id('ecdsa-p256', bytes([4] + [2] * 64))
    kn = key_id('ed25519', bytes([9] * 32))
    open(out + '/key_id.txt', 'w').write(ka)
    stmt = {"alg": "ed25519", "decision_digest": digest, "key_id": ka, "signed_at": "2026-11-20T10:00:00Z"}
    open(out + '/approval.message', 'wb').write(b"triplicate/approval/v1\n" + jcs(stmt).encode())
    b64 = lambda b: base64.b64encode(bytes(b)).decode()
    approvals = sorted([
        {"key_id": ka, "alg": "ed25519", "signature": b64(range(1, 65)), "signed_at": "2026-11-20T10:00:00Z"},
        {"key_id": kb, "alg": "ecdsa-p256", "signature": b64(range(65, 129)), "signed_at": "2026-11-20T10:05:30.25Z"},
    ], key=lambda a: a["key_id"])
    unsigned = {"version": 1, "seq": 41, "decision": dec, "approvals": approvals,
                "recorded_at": "2026-11-20T10:06:00.123456789Z"}
    open(out + '/record.notary_message', 'wb').write(b"triplicate/record/v1\n" + jcs(unsigned).encode())
    notary = {"key_id": kn, "alg": "ed25519", "signature": b64(range(255, 191, -1))}
    rec = dict(unsigned, notary=notary)
    rec_jcs = jcs(rec).encode()
    open(out + '/record.jcs', 'wb').write(rec_jcs)
    open(out + '/record.leaf.hex', 'w').write(hashlib.sha256(b"\x00" + rec_jcs).hexdigest())
    # record.json: non-canonical member order and spacing, the decision text verbatim.
    ind = lambda s: s.replace('\n', '\n  ')
    parts = [
        '  "version": 1',
        '  "seq": 41',
        '  "recorded_at": "2026-11-20T10:06:00.123456789Z"',
        '  "decision": ' + ind(dec_text.strip()),
        '  "approvals": [\n' + ',\n'.join('    ' + json.dumps(a, ensure_ascii=False) for a in approvals) + '\n  ]',
        '  "notary": ' + json.dumps(notary, ensure_ascii=False),
    ]
    open(out + '/record.json', 'w', encoding='utf-8').write('{\n' + ',\n'.join(parts) + '\n}\n')
    print(ka, kb, kn)
