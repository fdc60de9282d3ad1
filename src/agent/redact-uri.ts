/**
 * A download URI as others may see it: without its query and fragment, which is where a shared access
 * signature lives (Azure Storage's `?sv=…&sig=…`, S3's `X-Amz-Signature`). Anyone with twin read
 * rights reads the reported properties, so the twin carries this form; a removed query shows as
 * `?[redacted]`, so a reader knows there was one. Not a URL: returned as it was, without a query.
 */
export function redactUri(uri: string): string {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    const cut = uri.search(/[?#]/);
    return cut < 0 ? uri : `${uri.slice(0, cut)}?[redacted]`;
  }
  const hadQuery = url.search !== '' || url.hash !== '';
  url.search = '';
  url.hash = '';
  url.username = '';
  url.password = '';
  return hadQuery ? `${url.href}?[redacted]` : url.href;
}
