//! The S3 API on `s3s`: s3s parses requests, checks signatures (SigV4 and V2 in headers and
//! presigned URLs, streaming chunks) and writes S3's XML; this module maps each operation to
//! the blocking object operations of [`crate::objects`] (through [`crate::s3_common`]), run
//! on the gateway's blocking pool.

use s3s::dto::{self, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::checksum;
use crate::ingest;
use crate::objects;
pub use crate::s3_common::S3Front;
use crate::s3_common::{
    blocking, check_md5, etag, new_meta, to_s3, user_meta, Conditions, S3_DEFAULT_CONTENT_TYPE,
};

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        self.gw.ops.count("GetObject");
        self.get(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.gw.ops.count("HeadObject");
        let i = req.input;
        let cond = Conditions::new(
            i.if_match,
            i.if_none_match,
            i.if_modified_since,
            i.if_unmodified_since,
        );
        let gw = self.gw.clone();
        let info = blocking(move || {
            let info = gw.buckets.with(&i.bucket, |b| objects::head(b, &i.key))?;
            cond.check(&info)?;
            Ok(info)
        })
        .await?;
        Ok(S3Response::new(dto::HeadObjectOutput {
            content_length: Some(i64::try_from(info.len).unwrap_or(i64::MAX)),
            content_type: Some(info.content_type.clone()),
            e_tag: etag(&info.etag),
            last_modified: Some(Timestamp::from(info.last_modified)),
            metadata: user_meta(&info),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        self.gw.ops.count("PutObject");
        let (headers, trailers) = (req.headers, req.trailing_headers);
        let i = req.input;
        let declared = i.content_length.and_then(|l| u64::try_from(l).ok());
        let sums = checksum::hasher_for(&headers);
        let ct = i
            .content_type
            .or_else(|| Some(S3_DEFAULT_CONTENT_TYPE.to_string()));
        let target = ingest::Target {
            bucket: i.bucket,
            key: i.key,
            meta: new_meta(ct, i.metadata),
        };
        let up = match i.body {
            Some(b) => ingest::receive(&self.gw, target, b, declared, sums).await,
            None => {
                let none = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
                ingest::receive(&self.gw, target, none, Some(0), sums).await
            }
        }
        .map_err(to_s3)?;
        // A failed check drops `up`: a streamed write is aborted, nothing is stored.
        if let Some(md5) = &i.content_md5 {
            check_md5(md5, &up.md5)?;
        }
        let trailers = trailers.and_then(|t| t.take());
        checksum::verify(&up.checksums, &headers, trailers.as_ref()).map_err(to_s3)?;
        let etag_s = up.commit(&self.gw).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: etag(&etag_s),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.gw.ops.count("DeleteObject");
        let i = req.input;
        let gw = self.gw.clone();
        blocking(move || gw.buckets.with(&i.bucket, |b| objects::delete(b, &i.key))).await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        self.gw.ops.count("DeleteObjects");
        let i = req.input;
        if i.delete.objects.len() > 1000 {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "a DeleteObjects request names at most 1000 keys",
            ));
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        let gw = self.gw.clone();
        let out = blocking(move || {
            let b = gw.buckets.get(&i.bucket)?;
            let (mut deleted, mut errors) = (Vec::new(), Vec::new());
            for o in i.delete.objects {
                match objects::delete(&b, &o.key) {
                    Ok(()) => {
                        if !quiet {
                            deleted.push(dto::DeletedObject {
                                key: Some(o.key),
                                ..Default::default()
                            });
                        }
                    }
                    Err(e) => {
                        let s3e = to_s3(e);
                        errors.push(dto::Error {
                            code: Some(s3e.code().as_str().to_string()),
                            key: Some(o.key),
                            message: s3e.message().map(str::to_string),
                            version_id: None,
                        });
                    }
                }
            }
            Ok(dto::DeleteObjectsOutput {
                deleted: Some(deleted),
                errors: (!errors.is_empty()).then_some(errors),
                ..Default::default()
            })
        })
        .await?;
        Ok(S3Response::new(out))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.gw.ops.count("CopyObject");
        crate::s3_more::copy_object(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        self.gw.ops.count("ListObjectsV2");
        crate::s3_more::list_objects_v2(self, req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        self.gw.ops.count("ListBuckets");
        let owner = req.credentials.map(|c| c.access_key);
        crate::s3_more::list_buckets(self, owner).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.gw.ops.count("HeadBucket");
        let gw = self.gw.clone();
        let name = req.input.bucket;
        blocking(move || gw.buckets.get(&name).map(|_| ())).await?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        self.gw.ops.count("CreateBucket");
        let gw = self.gw.clone();
        let name = req.input.bucket;
        let location = format!("/{name}");
        let created = blocking(move || gw.buckets.create(&name)).await?;
        if !created {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            ));
        }
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(location),
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.gw.ops.count("CreateMultipartUpload");
        crate::multipart::create(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.gw.ops.count("UploadPart");
        crate::multipart::upload_part(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.gw.ops.count("CompleteMultipartUpload");
        crate::multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.gw.ops.count("AbortMultipartUpload");
        crate::multipart::abort(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        self.gw.ops.count("ListMultipartUploads");
        crate::multipart::list_uploads(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        self.gw.ops.count("ListObjects");
        crate::s3_more::list_objects_v1(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        self.gw.ops.count("ListParts");
        crate::multipart::list_parts(self, req).await
    }
}
